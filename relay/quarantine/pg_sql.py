"""SQL and row conversion for the PostgreSQL backend.

Each helper runs on a connection the caller holds inside a transaction (or,
for single reads, in autocommit).  Parameters are always bound, never
formatted into the text: no address or message byte ever appears in a
statement a server log could record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow

from relay.errors import QuarantineClaimedError, QuarantineNotFound, QuarantineStateError
from relay.quarantine.requests import SQL, pg_sql
from relay.quarantine.sqlite_sql import SUMMARY_COLUMNS
from relay.quarantine.store import (
    HELD,
    AuditEntry,
    MessageSummary,
    StoredMessage,
    release_key,
)

__all__ = [
    "CLEAR_CLAIM",
    "FULL_COLUMNS",
    "SUMMARY_COLUMNS",
    "Conn",
    "add_audit",
    "copies_done",
    "expire_ledger",
    "expire_messages",
    "held_row",
    "insert_held",
    "list_audit",
    "list_where",
    "record_copies",
    "refuse_live_claim",
    "row_to_stored",
    "row_to_summary",
]

Conn = AsyncConnection[DictRow]
FULL_COLUMNS = SUMMARY_COLUMNS + ", message"
CLEAR_CLAIM = "claimed_by = NULL, claimed_at = NULL"
_RELEASE_PREFIX = release_key("")


def _summary_fields(row: DictRow) -> dict[str, Any]:
    fields = {k: v for k, v in row.items() if k != "message"}
    fields["rcpt_tos"] = tuple(json.loads(row["rcpt_tos"]))
    fields["mail_options"] = tuple(json.loads(row["mail_options"]))
    fields["exposure"] = json.loads(row["exposure"])
    fields["size"] = int(row["size"])
    return fields


def row_to_summary(row: DictRow) -> MessageSummary:
    """A listing row (no message bytes)."""
    return MessageSummary(**_summary_fields(row))


def row_to_stored(row: DictRow) -> StoredMessage:
    """A full row; wiped (deleted) bytes come back as ``b""``."""
    return StoredMessage(**_summary_fields(row), message=bytes(row["message"] or b""))


def list_where(
    *, status: str | None, rule: str | None, sender: str | None
) -> tuple[str, tuple[Any, ...]]:
    """The ``WHERE`` clause (leading space, or "") and its parameters; ``sender``
    with an ``@`` is one address (case-insensitive), without one a whole domain."""
    clauses: list[str] = []
    params: list[Any] = []
    if status is not None:
        clauses.append("status = %s")
        params.append(status)
    if rule is not None:
        clauses.append("rule = %s")
        params.append(rule)
    if sender is not None:
        key = sender.strip().lower()
        if "@" in key:
            clauses.append("sender_key = %s")
            params.append(key)
        else:
            suffix = "@" + key  # right() rather than LIKE: "_" in a domain is a LIKE wildcard
            clauses.append("right(sender_key, %s) = %s")
            params.extend([len(suffix), suffix])
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


async def held_row(conn: Conn, message_id: str, wanted: str) -> DictRow:
    """Lock the message's row (``FOR UPDATE``: other instances wait) and return its
    status and claim; raises unless it exists and is held."""
    cur = await conn.execute(
        "SELECT status, claimed_by, claimed_at FROM messages WHERE id = %s FOR UPDATE",
        (message_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise QuarantineNotFound(message_id)
    if row["status"] != HELD:
        raise QuarantineStateError(message_id, row["status"], wanted)
    return row


async def insert_held(conn: Conn, message_id: str, row: Mapping[str, Any]) -> bool:
    """Insert a held message (autocommit: committed on return).  True if it is
    stored under ``message_id`` now, by this INSERT or by an earlier one of the
    same row whose answer was lost (same queue id and ``received_at``); False
    if another message has that id (draw another)."""
    cols = ", ".join(["id", *row])
    marks = ", ".join(["%s"] * (len(row) + 1))
    cur = await conn.execute(
        f"INSERT INTO messages ({cols}) VALUES ({marks}) ON CONFLICT (id) DO NOTHING",
        (message_id, *row.values()),
    )
    if cur.rowcount == 1:
        return True
    cur = await conn.execute(
        "SELECT queue_id, received_at FROM messages WHERE id = %s", (message_id,)
    )
    found = await cur.fetchone()
    return found is not None and (found["queue_id"], found["received_at"]) == (
        row["queue_id"],
        row["received_at"],
    )


def refuse_live_claim(
    row: DictRow, message_id: str, wanted: str, now: float, stale_after: float
) -> None:
    """Raise QuarantineClaimedError if someone claimed it less than ``stale_after`` ago."""
    claimed_by, claimed_at = row["claimed_by"], row["claimed_at"]
    if claimed_by is not None and claimed_at is not None and now - claimed_at < stale_after:
        raise QuarantineClaimedError(message_id, claimed_by, wanted)


async def expire_messages(conn: Conn, cutoff_epoch: float) -> int:
    """Delete messages received before the cutoff and their release ledger rows."""
    await conn.execute(
        "DELETE FROM split_ledger WHERE key IN "
        "(SELECT %s || id FROM messages WHERE received_at < %s)",
        (_RELEASE_PREFIX, cutoff_epoch),
    )
    for statement in SQL.PURGE:  # requests, approvals, holds and used tokens go with them
        await conn.execute(pg_sql(statement), {"cutoff": cutoff_epoch})
    cur = await conn.execute("DELETE FROM messages WHERE received_at < %s", (cutoff_epoch,))
    return int(cur.rowcount)


async def copies_done(conn: Conn, key: str) -> set[str]:
    """Ids of the copies of split ``key`` already delivered."""
    cur = await conn.execute("SELECT copy_id FROM split_ledger WHERE key = %s", (key,))
    return {r["copy_id"] for r in await cur.fetchall()}


async def record_copies(conn: Conn, key: str, copy_ids: Sequence[str], now: float) -> None:
    """Record entries of ``key`` (caller's transaction); recording twice is harmless."""
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO split_ledger (key, copy_id, recorded_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (key, copy_id) DO NOTHING",
            [(key, copy_id, now) for copy_id in copy_ids],
        )


async def expire_ledger(conn: Conn, cutoff_epoch: float) -> int:
    """Drop split rows recorded before the cutoff (release rows stay); returns how many."""
    cur = await conn.execute(
        "DELETE FROM split_ledger WHERE recorded_at < %s AND left(key, %s) <> %s",
        (cutoff_epoch, len(_RELEASE_PREFIX), _RELEASE_PREFIX),
    )
    return int(cur.rowcount)


async def add_audit(conn: Conn, now: float, entry: tuple[str, str, str, str, str]) -> None:
    """Append one audit entry ``(actor, action, target, result, detail)``."""
    await conn.execute(
        "INSERT INTO audit (at, actor, action, target, result, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        (now, *entry),
    )


async def list_audit(conn: Conn, limit: int, target: str | None) -> list[AuditEntry]:
    """Audit entries newest first, optionally only about ``target``."""
    where, params = (" WHERE target = %s", (target,)) if target is not None else ("", ())
    cur = await conn.execute(
        "SELECT id, at, actor, action, target, result, detail FROM audit"
        f"{where} ORDER BY id DESC LIMIT %s",
        (*params, limit),
    )
    return [AuditEntry(**r) for r in await cur.fetchall()]
