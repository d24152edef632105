"""Split ledger and audit log SQL for the SQLite backend.

Blocking helpers, run on the store's worker thread; each write is its own
``BEGIN IMMEDIATE`` transaction, committed (fsync'd) before it returns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from relay.quarantine.sqlite_leases import expire_leases
from relay.quarantine.sqlite_tx import write_transaction
from relay.quarantine.store import AuditEntry, release_key

__all__ = ["add_audit", "copies_done", "expire_ledger", "list_audit", "record_copies"]

_RELEASE_PREFIX = release_key("")


def copies_done(conn: sqlite3.Connection, key: str) -> set[str]:
    """Ids of the copies of split ``key`` already delivered."""
    rows = conn.execute("SELECT copy_id FROM split_ledger WHERE key = ?", (key,))
    return {r[0] for r in rows}


def record_copies(conn: sqlite3.Connection, key: str, copy_ids: Sequence[str], now: float) -> None:
    """Record entries of ``key`` in one transaction (all or none); twice is harmless."""
    with write_transaction(conn):
        conn.executemany(
            "INSERT OR IGNORE INTO split_ledger (key, copy_id, recorded_at) VALUES (?, ?, ?)",
            [(key, copy_id, now) for copy_id in copy_ids],
        )


def expire_ledger(conn: sqlite3.Connection, cutoff_epoch: float) -> int:
    """Drop split rows recorded before the cutoff (release rows stay); returns how many."""
    with write_transaction(conn):
        cur = conn.execute(
            "DELETE FROM split_ledger WHERE recorded_at < ? AND substr(key, 1, ?) != ?",
            (cutoff_epoch, len(_RELEASE_PREFIX), _RELEASE_PREFIX),
        )
        expire_leases(conn, cutoff_epoch)
    return int(cur.rowcount)


def add_audit(
    conn: sqlite3.Connection,
    now: float,
    actor: str,
    action: str,
    target: str,
    result: str,
    detail: str,
) -> None:
    """Append one audit entry."""
    with write_transaction(conn):
        conn.execute(
            "INSERT INTO audit (at, actor, action, target, result, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (now, actor, action, target, result, detail),
        )


def list_audit(conn: sqlite3.Connection, limit: int, target: str | None) -> list[AuditEntry]:
    """Audit entries newest first, optionally only about ``target``."""
    where, params = (" WHERE target = ?", (target,)) if target is not None else ("", ())
    rows = conn.execute(
        "SELECT id, at, actor, action, target, result, detail FROM audit"
        f"{where} ORDER BY id DESC LIMIT ?",
        (*params, limit),
    )
    return [AuditEntry(*r) for r in rows]
