"""SQLite backend of :class:`relay.quarantine.store.QuarantineStore`.

Concurrency design: one connection, owned by one dedicated worker thread
(:class:`SqliteWorker`).  Every method hands a small blocking function to
that thread and awaits it, so the event loop never blocks on disk and the
connection is never shared between threads.  Work is serialised, which is
what SQLite does with writers anyway; other processes on the same file
(several workers, the CLI) are coordinated by SQLite's own locking, WAL mode
and the busy timeout.

Durability: WAL with ``synchronous=FULL`` means every ``COMMIT`` fsyncs the
WAL before it returns, so :meth:`SqliteStore.put`, :meth:`record_copy` and
:meth:`add_audit` are on disk when their awaitable completes.  Writes use
``BEGIN IMMEDIATE`` so lock waits happen up front (within the busy timeout)
instead of failing half-way.  Deleting wipes the message bytes; with
``secure_delete=ON`` SQLite also zeroes the freed pages.
"""

from __future__ import annotations

import builtins
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from relay.errors import StoreError
from relay.quarantine import sqlite_leases, sqlite_log
from relay.quarantine.sqlite_claims import (
    CLEAR_CLAIM,
    expire_messages,
    held_row,
    refuse_live_claim,
    require_claim,
    set_claim,
)
from relay.quarantine.sqlite_requests import SqliteRequestMethods
from relay.quarantine.sqlite_search import SqliteSearchMethods
from relay.quarantine.sqlite_sql import (
    FULL_COLUMNS,
    SUMMARY_COLUMNS,
    fetch_stored,
    insert_message,
    list_where,
    new_message_id,
    new_message_row,
    row_to_stored,
    row_to_summary,
)
from relay.quarantine.sqlite_stats import SqliteStatsMethods
from relay.quarantine.sqlite_tx import write_transaction
from relay.quarantine.sqlite_worker import SqliteWorker
from relay.quarantine.store import (
    CLAIM_STALE_AFTER,
    DELETED,
    HELD,
    RELEASE_MODES,
    RELEASED,
    STATUSES,
    AuditEntry,
    Lease,
    NewMessage,
    Page,
    QuarantineStats,
    StoredMessage,
)

__all__ = ["SqliteStore", "new_message_id"]

T = TypeVar("T")


class SqliteStore(SqliteRequestMethods, SqliteStatsMethods, SqliteSearchMethods):
    """The quarantine, split ledger and audit log in one SQLite file (WAL)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path).expanduser()
        self.busy_timeout = busy_timeout
        self._clock = clock
        self._main = SqliteWorker(self.path, busy_timeout, "ccguard-store")

    # -- plumbing ---------------------------------------------------------

    async def _call(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._main.call(what, fn)

    async def open(self) -> None:
        """Create the directory and file if needed, migrate the schema, check it is usable.

        The connection stays open (warm) until :meth:`close`: no write, the
        split ledger's included, pays for connecting.
        """
        await self._main.open()

    async def close(self) -> None:
        """Close the connection and stop the worker thread; safe to call twice."""
        await self._main.close()

    # -- messages ---------------------------------------------------------

    async def put(self, new: NewMessage) -> str:
        """Hold ``new``; committed (fsync'd) before it returns; returns the new id."""
        received_at = new.received_at if new.received_at is not None else self._clock()

        def run(conn: sqlite3.Connection) -> str:
            message_id = insert_message(conn, new_message_row(new, received_at, pieces=True))
            if message_id is None:
                raise StoreError(f"quarantine store {self.path}: could not draw a unique id")
            return message_id

        return await self._call("put", run)

    async def get(self, message_id: str) -> StoredMessage | None:
        """The message with its bytes, or ``None``."""
        return await self._call("get", lambda conn: fetch_stored(conn, message_id))

    async def list(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        sender: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page:
        """Summaries newest first.  ``sender``: a full address (case-insensitive)
        or a bare domain (every sender at that domain)."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        if limit < 1 or offset < 0:
            raise ValueError("limit must be >= 1 and offset >= 0")
        where, params = list_where(status=status, rule=rule, sender=sender)

        def run(conn: sqlite3.Connection) -> Page:
            total = conn.execute(f"SELECT count(*) FROM messages{where}", params).fetchone()[0]
            rows = conn.execute(
                f"SELECT {SUMMARY_COLUMNS} FROM messages{where} "
                "ORDER BY received_at DESC, rowid DESC LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
            items = tuple(row_to_summary(r) for r in rows)
            return Page(items=items, total=int(total), limit=limit, offset=offset)

        return await self._call("list", run)

    def _full_row(self, conn: sqlite3.Connection, message_id: str) -> StoredMessage:
        row = conn.execute(
            f"SELECT {FULL_COLUMNS} FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        return row_to_stored(row)

    async def claim(
        self, message_id: str, actor: str, stale_after: float = CLAIM_STALE_AFTER
    ) -> StoredMessage:
        """Claim a held message for release by ``actor`` (check and set in one transaction)."""

        def run(conn: sqlite3.Connection) -> StoredMessage:
            now = self._clock()
            with write_transaction(conn):
                row = held_row(conn, message_id, "release")
                refuse_live_claim(row, message_id, "release", now, stale_after)
                set_claim(conn, message_id, actor, now)
            stored = self._full_row(conn, message_id)
            return replace(stored, claim_taken_over=row["claimed_by"] is not None)

        return await self._call("claim", run)

    async def release_claim(self, message_id: str, actor: str) -> None:
        """Drop ``actor``'s claim on ``message_id``; nothing happens if it is not theirs."""

        def run(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                conn.execute(
                    f"UPDATE messages SET {CLEAR_CLAIM} WHERE id = ? AND claimed_by = ?",
                    (message_id, actor),
                )

        await self._call("release claim", run)

    async def renew_claim(self, message_id: str, actor: str) -> bool:
        """Refresh ``actor``'s claim on a held message; False if it is no longer theirs."""

        def run(conn: sqlite3.Connection) -> bool:
            with write_transaction(conn):
                cur = conn.execute(
                    "UPDATE messages SET claimed_at = ? "
                    "WHERE id = ? AND claimed_by = ? AND status = ?",
                    (self._clock(), message_id, actor, HELD),
                )
            return cur.rowcount == 1

        return await self._call("renew claim", run)

    async def mark_released(self, message_id: str, actor: str, mode: str) -> StoredMessage:
        """held and claimed by ``actor`` → released by ``actor`` with ``mode``."""
        if mode not in RELEASE_MODES:
            raise ValueError(f"release mode must be one of {', '.join(RELEASE_MODES)}")

        def run(conn: sqlite3.Connection) -> StoredMessage:
            with write_transaction(conn):
                row = held_row(conn, message_id, "release")
                require_claim(row, message_id, actor, "release")
                conn.execute(
                    "UPDATE messages SET status = ?, released_at = ?, released_by = ?, "
                    f"release_mode = ?, {CLEAR_CLAIM} WHERE id = ?",
                    (RELEASED, self._clock(), actor, mode, message_id),
                )
            return self._full_row(conn, message_id)

        return await self._call("release", run)

    async def delete(self, message_id: str, actor: str) -> None:
        """held (no release under way) → deleted by ``actor``; bytes wiped, metadata kept."""

        def run(conn: sqlite3.Connection) -> None:
            now = self._clock()
            with write_transaction(conn):
                row = held_row(conn, message_id, "delete")
                refuse_live_claim(row, message_id, "delete", now, CLAIM_STALE_AFTER)
                conn.execute(
                    "UPDATE messages SET status = ?, deleted_at = ?, deleted_by = ?, "
                    f"message = NULL, {CLEAR_CLAIM} WHERE id = ?",
                    (DELETED, now, actor, message_id),
                )

        await self._call("delete", run)

    async def expire(self, cutoff_epoch: float) -> int:
        """Purge every message received before ``cutoff_epoch`` (any status) and its
        release ledger rows."""

        def run(conn: sqlite3.Connection) -> int:
            with write_transaction(conn):
                return expire_messages(conn, cutoff_epoch)

        return await self._call("expire", run)

    async def stats(self) -> QuarantineStats:
        """Count per status (every status present) and the oldest held ``received_at``."""

        def run(conn: sqlite3.Connection) -> QuarantineStats:
            counts = dict.fromkeys(STATUSES, 0)
            for status, count in conn.execute(
                "SELECT status, count(*) FROM messages GROUP BY status"
            ):
                counts[status] = int(count)
            oldest = conn.execute(
                "SELECT min(received_at) FROM messages WHERE status = ?", (HELD,)
            ).fetchone()[0]
            return QuarantineStats(counts=counts, oldest_held_at=oldest)

        return await self._call("stats", run)

    async def check_writable(self) -> None:
        """Commit a real write (one probe row, fsync'd); raises StoreError if it fails."""

        def run(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                conn.execute(
                    "INSERT INTO probe (id, at) VALUES (1, ?) "
                    "ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                    (self._clock(),),
                )

        await self._call("write check", run)

    # -- split ledger -----------------------------------------------------

    async def copies_done(self, key: str) -> set[str]:
        """Ids of the copies of split ``key`` already delivered."""
        return await self._call("ledger read", lambda conn: sqlite_log.copies_done(conn, key))

    async def record_copy(self, key: str, copy_id: str) -> None:
        """Record a delivered copy; fsync'd before it returns; recording twice is harmless."""
        await self.record_copies(key, (copy_id,))

    async def record_copies(self, key: str, copy_ids: Sequence[str]) -> None:
        """Record several entries of ``key`` in one transaction (all or none);
        fsync'd before it returns; recording twice is harmless.

        Not on a connection of its own: a second connection to the file in
        this process showed stale reads after another process's writes (SQLite
        3.40), and a stale ledger read is a duplicate.  See docs/actions.md.
        """
        ids = tuple(copy_ids)

        def run(conn: sqlite3.Connection) -> None:
            sqlite_log.record_copies(conn, key, ids, self._clock())

        await self._call("ledger write", run)

    async def acquire_lease(self, key: str, holder: str, ttl: float) -> Lease | None:
        """Take the lease on ``key`` unless a live one exists (see sqlite_leases)."""
        return await self._call(
            "lease", lambda conn: sqlite_leases.acquire(conn, key, holder, self._clock(), ttl)
        )

    async def renew_lease(self, lease: Lease, ttl: float) -> bool:
        """Extend ``lease`` by ``ttl`` from now; False if the key changed hands."""
        return await self._call(
            "lease renewal", lambda conn: sqlite_leases.renew(conn, lease, self._clock(), ttl)
        )

    async def drop_lease(self, lease: Lease) -> None:
        """Give ``lease`` up; no-op if the key changed hands."""
        await self._call("lease drop", lambda conn: sqlite_leases.drop(conn, lease))

    async def record_copies_fenced(self, lease: Lease, copy_ids: Sequence[str]) -> None:
        """Ledger entries under ``lease``, refused (LeaseLostError) if it was taken over."""
        ids = tuple(copy_ids)
        await self._call(
            "ledger write",
            lambda conn: sqlite_leases.record_fenced(conn, lease, ids, self._clock()),
        )

    async def expire_ledger(self, cutoff_epoch: float) -> int:
        """Drop split-ledger rows recorded before ``cutoff_epoch``; returns how many.
        Release rows are kept as long as their message (see :meth:`expire`)."""

        def run(conn: sqlite3.Connection) -> int:
            return sqlite_log.expire_ledger(conn, cutoff_epoch)

        return await self._call("ledger expire", run)

    # -- audit ------------------------------------------------------------

    async def add_audit(
        self, actor: str, action: str, target: str, result: str, detail: str = ""
    ) -> None:
        """Append one audit entry; fsync'd before it returns."""

        def run(conn: sqlite3.Connection) -> None:
            sqlite_log.add_audit(conn, self._clock(), actor, action, target, result, detail)

        await self._call("audit write", run)

    async def list_audit(
        self, limit: int = 100, target: str | None = None
    ) -> builtins.list[AuditEntry]:
        """Audit entries newest first, optionally only about ``target``."""

        def run(conn: sqlite3.Connection) -> builtins.list[AuditEntry]:
            return sqlite_log.list_audit(conn, limit, target)

        return await self._call("audit read", run)
