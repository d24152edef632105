"""Leases (claims with expiry and a fencing token) in the SQLite backend.

One row per key in ``leases``: the holder (unique per attempt, NULL once
dropped), the fencing token (one more each time the key changes hands) and
when the lease expires.  Taking a lease is one upsert whose update only
happens if the row is free or expired; ``RETURNING`` says whether it did.
The same statement works on PostgreSQL (see docs/quarantine-store.md).

The fence is the holder and token, never the clock: a holder whose lease
expired may still renew or record as long as nobody took the key over, since
a take-over and a fenced write are serialised by the database (one
``BEGIN IMMEDIATE`` writer at a time here, a row lock on PostgreSQL).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from relay.errors import LeaseLostError
from relay.quarantine.sqlite_tx import write_transaction
from relay.quarantine.store import Lease

__all__ = ["ACQUIRE_SQL", "acquire", "drop", "expire_leases", "record_fenced", "renew"]

ACQUIRE_SQL = (
    "INSERT INTO leases (key, holder, token, expires_at, taken_over) VALUES (?, ?, 1, ?, 0) "
    "ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, token = leases.token + 1, "
    "expires_at = excluded.expires_at, taken_over = (leases.holder IS NOT NULL) "
    "WHERE leases.holder IS NULL OR leases.expires_at <= ? "
    "RETURNING token, taken_over"
)
_MINE = "key = ? AND holder = ? AND token = ?"


def _hint(key: str) -> str:
    # Keys are hashes already (split_key) or "release:<id>": short enough to name.
    return key[:40]


def acquire(
    conn: sqlite3.Connection, key: str, holder: str, now: float, ttl: float
) -> Lease | None:
    """Take ``key`` for ``holder`` until ``now + ttl`` unless a live lease exists."""
    with write_transaction(conn):
        row = conn.execute(ACQUIRE_SQL, (key, holder, now + ttl, now)).fetchone()
    if row is None:
        return None
    return Lease(key=key, holder=holder, token=int(row[0]), taken_over=bool(row[1]))


def renew(conn: sqlite3.Connection, lease: Lease, now: float, ttl: float) -> bool:
    """Push the expiry of ``lease`` to ``now + ttl``; False if the key changed hands."""
    with write_transaction(conn):
        cur = conn.execute(
            f"UPDATE leases SET expires_at = ? WHERE {_MINE}",
            (now + ttl, lease.key, lease.holder, lease.token),
        )
    return cur.rowcount == 1


def drop(conn: sqlite3.Connection, lease: Lease) -> None:
    """Free the key (the row stays, so the next token is still larger)."""
    with write_transaction(conn):
        conn.execute(
            f"UPDATE leases SET holder = NULL, expires_at = 0 WHERE {_MINE}",
            (lease.key, lease.holder, lease.token),
        )


def record_fenced(
    conn: sqlite3.Connection, lease: Lease, copy_ids: Sequence[str], now: float
) -> None:
    """Ledger entries of ``lease.key``, only if ``lease`` still holds it (same transaction)."""
    with write_transaction(conn):
        mine = conn.execute(
            f"SELECT 1 FROM leases WHERE {_MINE}", (lease.key, lease.holder, lease.token)
        ).fetchone()
        if mine is None:
            raise LeaseLostError(_hint(lease.key), lease.token)
        conn.executemany(
            "INSERT OR IGNORE INTO split_ledger (key, copy_id, recorded_at) VALUES (?, ?, ?)",
            [(lease.key, copy_id, now) for copy_id in copy_ids],
        )


def expire_leases(conn: sqlite3.Connection, cutoff_epoch: float) -> int:
    """Forget free or long-expired leases (part of the ledger purge, same transaction)."""
    cur = conn.execute("DELETE FROM leases WHERE expires_at < ?", (cutoff_epoch,))
    return int(cur.rowcount)
