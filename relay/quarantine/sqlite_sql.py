"""Column lists, the listing filter and row ↔ dataclass conversion for the SQLite backend."""

from __future__ import annotations

import json
import secrets
import sqlite3
import string
from typing import Any

from relay.quarantine.sqlite_tx import write_transaction
from relay.quarantine.store import HELD, MessageSummary, NewMessage, StoredMessage
from relay.quarantine.subject import decode_subject

__all__ = [
    "FULL_COLUMNS",
    "SUMMARY_COLUMNS",
    "fetch_stored",
    "insert_message",
    "list_where",
    "new_message_id",
    "new_message_row",
    "row_to_stored",
    "row_to_summary",
]

_SUMMARY = (
    "id", "received_at", "status", "mail_from", "rcpt_tos", "mail_options", "client_ip",
    "client_helo", "queue_id", "subject", "size", "action", "rule", "reason", "exposure",
    "released_at", "released_by", "release_mode", "deleted_at", "deleted_by",
    "claimed_by", "claimed_at", "auth_user",
)  # fmt: skip
SUMMARY_COLUMNS = ", ".join(_SUMMARY)
FULL_COLUMNS = SUMMARY_COLUMNS + ", message"


def _summary_fields(row: sqlite3.Row) -> dict[str, Any]:
    fields = {name: row[name] for name in _SUMMARY}
    fields["rcpt_tos"] = tuple(json.loads(row["rcpt_tos"]))
    fields["mail_options"] = tuple(json.loads(row["mail_options"]))
    fields["exposure"] = json.loads(row["exposure"])
    return fields


def row_to_summary(row: sqlite3.Row) -> MessageSummary:
    """A listing row (no message bytes)."""
    return MessageSummary(**_summary_fields(row))


def row_to_stored(row: sqlite3.Row) -> StoredMessage:
    """A full row; wiped (deleted) bytes come back as ``b""``."""
    message = row["message"]
    return StoredMessage(**_summary_fields(row), message=bytes(message or b""))


_ID_ALPHABET = string.ascii_letters + string.digits


def new_message_id() -> str:
    """A new unguessable id: 16 letters and digits (95 random bits).

    No ``-`` or ``_``: an id starting with ``-`` would read as an option to
    ``ccguard quarantine show ID``, and both break double-click selection.
    """
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def new_message_row(new: NewMessage, received_at: float, *, pieces: bool = False) -> dict[str, Any]:
    """The column values (all but ``id``) of ``new`` as a freshly held message.

    ``message`` is ``trace + message`` joined, or with ``pieces`` the tuple of
    both for :func:`insert_message` to stream without joining them."""
    return {
        "received_at": received_at,
        "status": HELD,
        "mail_from": new.mail_from,
        "sender_key": new.mail_from.lower(),
        "rcpt_tos": json.dumps(list(new.rcpt_tos)),
        "mail_options": json.dumps(list(new.mail_options)),
        "client_ip": new.client_ip,
        "client_helo": new.client_helo,
        "queue_id": new.queue_id,
        "auth_user": new.auth_user,
        "size": len(new.trace) + len(new.message),
        "action": new.action,
        "rule": new.rule,
        "reason": new.reason,
        "exposure": json.dumps(dict(new.exposure), sort_keys=True),
        "message": (new.trace, new.message) if pieces else new.trace + new.message,
        "subject": decode_subject(new.message),  # the trace header has no Subject
    }


# Bytes written to the message blob at a time.
_BLOB_CHUNK = 1024 * 1024


def insert_message(conn: sqlite3.Connection, row: dict[str, Any], attempts: int = 5) -> str | None:
    """Insert ``row`` under a new id (committed); ``None`` if no unique id was drawn.

    The message bytes are streamed into a ``zeroblob`` in the same transaction:
    binding them would make SQLite copy a large message twice more in memory.
    """
    fields = {name: value for name, value in row.items() if name != "message"}
    message: bytes | tuple[bytes, ...] = row["message"]
    pieces = message if isinstance(message, tuple) else (message,)
    size = sum(len(piece) for piece in pieces)
    cols = ", ".join(["id", *fields, "message"])
    marks = ", ".join(["?"] * (len(fields) + 1) + ["zeroblob(?)"])
    for _ in range(attempts):
        message_id = new_message_id()
        try:
            with write_transaction(conn):
                cursor = conn.execute(
                    f"INSERT INTO messages ({cols}) VALUES ({marks})",
                    (message_id, *fields.values(), size),
                )
                _write_blob(conn, cursor.lastrowid, pieces)
            return message_id
        except sqlite3.IntegrityError:
            continue  # id collision: astronomically rare, draw another
    return None


def _write_blob(conn: sqlite3.Connection, rowid: int | None, pieces: tuple[bytes, ...]) -> None:
    if not any(pieces):
        return
    assert rowid is not None
    with conn.blobopen("messages", "message", rowid) as blob:
        for piece in pieces:
            view = memoryview(piece)
            for start in range(0, len(view), _BLOB_CHUNK):
                blob.write(view[start : start + _BLOB_CHUNK])


def fetch_stored(conn: sqlite3.Connection, message_id: str) -> StoredMessage | None:
    """The full message ``message_id``, or ``None``."""
    row = conn.execute(
        f"SELECT {FULL_COLUMNS} FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    return None if row is None else row_to_stored(row)


def list_where(
    *, status: str | None, rule: str | None, sender: str | None
) -> tuple[str, tuple[Any, ...]]:
    """The ``WHERE`` clause (with a leading space, or "") and its parameters.

    ``sender`` with an ``@`` matches that address case-insensitively; without
    one it is a domain and matches every sender at that domain.
    """
    clauses: list[str] = []
    params: list[Any] = []
    if status is not None:
        clauses.append("status = ?")
        params.append(status)
    if rule is not None:
        clauses.append("rule = ?")
        params.append(rule)
    if sender is not None:
        key = sender.strip().lower()
        if "@" in key:
            clauses.append("sender_key = ?")
            params.append(key)
        else:
            # substr() rather than LIKE: a domain may contain "_" (a LIKE wildcard).
            suffix = "@" + key
            clauses.append("substr(sender_key, -?) = ?")
            params.extend([len(suffix), suffix])
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
