"""Column lists, the listing filter and row → dataclass conversion for the SQLite backend."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from relay.quarantine.store import MessageSummary, StoredMessage

__all__ = ["FULL_COLUMNS", "SUMMARY_COLUMNS", "list_where", "row_to_stored", "row_to_summary"]

_SUMMARY = (
    "id", "received_at", "status", "mail_from", "rcpt_tos", "mail_options", "client_ip",
    "client_helo", "queue_id", "subject", "size", "action", "rule", "reason", "exposure",
    "released_at", "released_by", "release_mode", "deleted_at", "deleted_by",
    "claimed_by", "claimed_at",
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
