"""Release claims in the SQLite backend: blocking helpers run inside one write transaction.

A claim is the pair ``(claimed_by, claimed_at)`` on a held message.  The
check and the update happen in the same ``BEGIN IMMEDIATE`` transaction, so
two processes on one file (web server and CLI, or two instances) cannot both
win: SQLite lets only one writer in at a time.
"""

from __future__ import annotations

import sqlite3

from relay.errors import QuarantineClaimedError, QuarantineNotFound, QuarantineStateError
from relay.quarantine.requests import SQL
from relay.quarantine.store import HELD, release_key

__all__ = [
    "CLEAR_CLAIM",
    "expire_messages",
    "held_row",
    "refuse_live_claim",
    "require_claim",
    "set_claim",
]

CLEAR_CLAIM = "claimed_by = NULL, claimed_at = NULL"


def held_row(conn: sqlite3.Connection, message_id: str, wanted: str) -> sqlite3.Row:
    """The message's status and claim; raises unless it exists and is held."""
    row = conn.execute(
        "SELECT status, claimed_by, claimed_at FROM messages WHERE id = ?", (message_id,)
    ).fetchone()
    if row is None:
        raise QuarantineNotFound(message_id)
    if row["status"] != HELD:
        raise QuarantineStateError(message_id, row["status"], wanted)
    return row  # type: ignore[no-any-return]


def refuse_live_claim(
    row: sqlite3.Row, message_id: str, wanted: str, now: float, stale_after: float
) -> None:
    """Raise QuarantineClaimedError if someone claimed the message less than ``stale_after`` ago."""
    claimed_by, claimed_at = row["claimed_by"], row["claimed_at"]
    if claimed_by is not None and claimed_at is not None and now - claimed_at < stale_after:
        raise QuarantineClaimedError(message_id, claimed_by, wanted)


def require_claim(row: sqlite3.Row, message_id: str, actor: str, wanted: str) -> None:
    """Raise QuarantineClaimedError unless ``actor`` holds the claim."""
    if row["claimed_by"] != actor:
        raise QuarantineClaimedError(message_id, row["claimed_by"], wanted)


def set_claim(conn: sqlite3.Connection, message_id: str, actor: str, now: float) -> None:
    """Record ``actor``'s claim (the caller checked it may)."""
    conn.execute(
        "UPDATE messages SET claimed_by = ?, claimed_at = ? WHERE id = ?",
        (actor, now, message_id),
    )


def expire_messages(conn: sqlite3.Connection, cutoff_epoch: float) -> int:
    """Delete messages received before the cutoff and their release ledger rows."""
    prefix = release_key("")
    conn.execute(
        "DELETE FROM split_ledger WHERE key IN "
        "(SELECT ? || id FROM messages WHERE received_at < ?)",
        (prefix, cutoff_epoch),
    )
    for statement in SQL.PURGE:  # requests, approvals, holds and used tokens go with them
        conn.execute(statement, {"cutoff": cutoff_epoch})
    cur = conn.execute("DELETE FROM messages WHERE received_at < ?", (cutoff_epoch,))
    return int(cur.rowcount)
