"""PostgreSQL backend of :class:`relay.quarantine.store.QuarantineStore`.

Concurrency design: an async pool (psycopg 3, ``[quarantine] pool_size``
connections) shared by every caller of one process; several processes and
hosts share the database.  A release claim, the release and a delete lock
the message's row (``SELECT ... FOR UPDATE``) in one transaction, so two
instances can never both win.  Every method runs under a deadline of
``connect_timeout + statement_timeout``: a database that is down, slow or
unreachable gives :class:`StoreError` (``451 4.3.0``), never a hang.

Durability: every write is its own transaction, committed (WAL flushed with
the server's default ``synchronous_commit = on``) before the method returns.
Deleting sets the bytes to NULL; the old row version is removed by VACUUM.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from relay.errors import QuarantineClaimedError, StoreError
from relay.quarantine import pg_sql
from relay.quarantine.pg_conn import PgOptions, build_conninfo, describe, make_pool
from relay.quarantine.pg_conn import translate_error as _translate
from relay.quarantine.pg_leases import PgLeaseMethods, database_now
from relay.quarantine.pg_requests import PgRequestMethods
from relay.quarantine.pg_schema import SCHEMA_VERSION, migrate, schema_version
from relay.quarantine.pg_search import PgSearchMethods
from relay.quarantine.pg_sql import CLEAR_CLAIM, FULL_COLUMNS, SUMMARY_COLUMNS, Conn
from relay.quarantine.pg_stats import PgStatsMethods
from relay.quarantine.sqlite_sql import new_message_id, new_message_row
from relay.quarantine.store import (
    CLAIM_STALE_AFTER,
    DELETED,
    HELD,
    RELEASE_MODES,
    RELEASED,
    STATUSES,
    AuditEntry,
    NewMessage,
    Page,
    QuarantineStats,
    StoredMessage,
)

__all__ = ["PgStore", "pg_schema_version"]

T = TypeVar("T")
_DRIVER_ERRORS = (psycopg.Error, PoolTimeout, TimeoutError, OSError)


class PgStore(PgLeaseMethods, PgRequestMethods, PgStatsMethods, PgSearchMethods):
    """The quarantine, split ledger, leases and audit log in one PostgreSQL database.

    Release claims and leases expire by the DATABASE's clock, so instances on
    hosts with skewed clocks agree; ``clock`` (tests only) replaces it, and
    stamps ``received_at``, decisions, ledger rows and audit entries, which
    otherwise come from this host's clock.
    """

    def __init__(
        self,
        url: str,
        options: PgOptions | None = None,
        *,
        clock: Callable[[], float] | None = None,
        migrate: bool = True,
    ) -> None:
        self.url = url
        self.where = describe(url)
        self.options = options or PgOptions()
        self._clock = clock or time.time
        self._injected_clock = clock
        self._migrate = migrate
        self._pool: AsyncConnectionPool[Conn] | None = None

    # -- plumbing ---------------------------------------------------------

    @property
    def deadline(self) -> float:
        """Seconds any one operation may take, waiting for a connection included."""
        return self.options.connect_timeout + self.options.statement_timeout

    async def _call(self, what: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        pool = self._pool
        if pool is None:
            raise StoreError(f"quarantine store {self.where}: {what} failed: store is not open")
        try:
            async with asyncio.timeout(self.deadline), pool.connection() as conn:
                return await fn(conn)
        except StoreError:
            raise
        except _DRIVER_ERRORS as exc:
            raise _translate(self.where, what, exc) from exc

    async def _in_transaction(self, what: str, fn: Callable[[Conn], Awaitable[T]]) -> T:
        async def run(conn: Conn) -> T:
            async with conn.transaction():
                return await fn(conn)

        return await self._call(what, run)

    async def open(self) -> None:
        """Connect, migrate the schema (unless built with ``migrate=False``), check it.

        The first connection is made directly (not by the pool) so a refused
        password or an unknown database is reported as such; then the pool
        opens and keeps at least one connection warm until :meth:`close`.
        """
        if self._pool is not None:
            return
        conninfo = build_conninfo(self.url, self.options)
        try:
            async with asyncio.timeout(self.deadline):
                await self._prepare_schema(conninfo)
            pool = make_pool(conninfo, self.options)
            try:
                async with asyncio.timeout(self.deadline):
                    await pool.open(wait=True, timeout=self.options.connect_timeout)
            except BaseException:
                await pool.close()
                raise
        except _DRIVER_ERRORS as exc:
            raise _translate(self.where, "open", exc) from exc
        self._pool = pool

    async def _prepare_schema(self, conninfo: str) -> None:
        conn = await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, row_factory=psycopg.rows.dict_row
        )
        async with conn:
            if self._migrate:
                await migrate(conn, self.where)
                return
            found = await schema_version(conn, self.where)
            if found != SCHEMA_VERSION:
                raise StoreError(
                    f"quarantine store {self.where}: schema version {found}, this ccguard "
                    f"needs {SCHEMA_VERSION}: run `ccguard db migrate`"
                )

    async def close(self) -> None:
        """Close every pooled connection; safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close(timeout=self.options.connect_timeout)

    def pool_stats(self) -> dict[str, int]:
        """The pool's counters (``pool_size``, ``pool_available``, ...), {} when closed."""
        return dict(self._pool.get_stats()) if self._pool is not None else {}

    # -- messages ---------------------------------------------------------

    async def put(self, new: NewMessage) -> str:
        """Hold ``new``; committed before it returns; returns the new id.

        A failure after the INSERT was sent (the connection dropped, the
        answer lost) may hide a commit: the INSERT is then sent once more with
        the same id, which is idempotent (``ON CONFLICT (id) DO NOTHING``
        waits for an INSERT of that id still in flight, and a row that is
        already there counts as ours if its queue id and time are), so the
        client gets ``250`` for one held copy instead of ``451`` and a second
        copy on its retry."""
        received_at = new.received_at if new.received_at is not None else self._clock()
        row = new_message_row(new, received_at)
        for _ in range(5):
            message_id = new_message_id()
            sent = False

            async def run(conn: Conn, message_id: str = message_id) -> bool:
                nonlocal sent
                sent = True
                return await pg_sql.insert_held(conn, message_id, row)

            try:
                stored = await self._call("put", run)
            except StoreError:
                if not sent:  # nothing reached the database
                    raise
                stored = await self._call("put", run)  # same id: stores it at most once
            if stored:
                return message_id
        raise StoreError(f"quarantine store {self.where}: could not draw a unique id")

    async def get(self, message_id: str) -> StoredMessage | None:
        """The message with its bytes, or ``None``."""

        async def run(conn: Conn) -> StoredMessage | None:
            cur = await conn.execute(
                f"SELECT {FULL_COLUMNS} FROM messages WHERE id = %s",
                (message_id,),
            )
            row = await cur.fetchone()
            return None if row is None else pg_sql.row_to_stored(row)

        return await self._call("get", run)

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
        where, params = pg_sql.list_where(status=status, rule=rule, sender=sender)

        async def run(conn: Conn) -> Page:
            cur = await conn.execute(f"SELECT count(*) AS n FROM messages{where}", params)
            total = (await cur.fetchone() or {"n": 0})["n"]
            cur = await conn.execute(
                f"SELECT {SUMMARY_COLUMNS} FROM messages{where} "
                "ORDER BY received_at DESC, seq DESC LIMIT %s OFFSET %s",
                (*params, limit, offset),
            )
            items = tuple(pg_sql.row_to_summary(r) for r in await cur.fetchall())
            return Page(items=items, total=int(total), limit=limit, offset=offset)

        return await self._in_transaction("list", run)  # one snapshot: count and rows agree

    async def _full_row(self, conn: Conn, message_id: str) -> StoredMessage:
        cur = await conn.execute(
            f"SELECT {FULL_COLUMNS} FROM messages WHERE id = %s",
            (message_id,),
        )
        row = await cur.fetchone()
        assert row is not None  # locked FOR UPDATE by the caller's transaction
        return pg_sql.row_to_stored(row)

    async def claim(
        self, message_id: str, actor: str, stale_after: float = CLAIM_STALE_AFTER
    ) -> StoredMessage:
        """Claim a held message for release by ``actor`` (row locked, checked and set)."""

        async def run(conn: Conn) -> StoredMessage:
            now = await database_now(conn, self._injected_now())
            row = await pg_sql.held_row(conn, message_id, "release")
            pg_sql.refuse_live_claim(row, message_id, "release", now, stale_after)
            await conn.execute(
                "UPDATE messages SET claimed_by = %s, claimed_at = %s WHERE id = %s",
                (actor, now, message_id),
            )
            stored = await self._full_row(conn, message_id)
            return replace(stored, claim_taken_over=row["claimed_by"] is not None)

        return await self._in_transaction("claim", run)

    async def release_claim(self, message_id: str, actor: str) -> None:
        """Drop ``actor``'s claim on ``message_id``; nothing happens if it is not theirs."""

        async def run(conn: Conn) -> None:
            await conn.execute(
                f"UPDATE messages SET {CLEAR_CLAIM} WHERE id = %s AND claimed_by = %s",
                (message_id, actor),
            )

        await self._in_transaction("release claim", run)

    async def mark_released(self, message_id: str, actor: str, mode: str) -> StoredMessage:
        """held and claimed by ``actor`` → released by ``actor`` with ``mode``."""
        if mode not in RELEASE_MODES:
            raise ValueError(f"release mode must be one of {', '.join(RELEASE_MODES)}")

        async def run(conn: Conn) -> StoredMessage:
            row = await pg_sql.held_row(conn, message_id, "release")
            if row["claimed_by"] != actor:
                raise QuarantineClaimedError(message_id, row["claimed_by"], "release")
            await conn.execute(
                "UPDATE messages SET status = %s, released_at = %s, released_by = %s, "
                f"release_mode = %s, {CLEAR_CLAIM} WHERE id = %s",
                (RELEASED, self._clock(), actor, mode, message_id),
            )
            return await self._full_row(conn, message_id)

        return await self._in_transaction("release", run)

    async def delete(self, message_id: str, actor: str) -> None:
        """held (no release under way) → deleted by ``actor``; bytes wiped, metadata kept."""

        async def run(conn: Conn) -> None:
            now = await database_now(conn, self._injected_now())
            row = await pg_sql.held_row(conn, message_id, "delete")
            pg_sql.refuse_live_claim(row, message_id, "delete", now, CLAIM_STALE_AFTER)
            await conn.execute(
                "UPDATE messages SET status = %s, deleted_at = %s, deleted_by = %s, "
                f"message = NULL, {CLEAR_CLAIM} WHERE id = %s",
                (DELETED, now, actor, message_id),
            )

        await self._in_transaction("delete", run)

    async def expire(self, cutoff_epoch: float) -> int:
        """Purge every message received before ``cutoff_epoch`` (any status) and its
        release ledger rows."""
        return await self._in_transaction(
            "expire", lambda c: pg_sql.expire_messages(c, cutoff_epoch)
        )

    async def stats(self) -> QuarantineStats:
        """Count per status (every status present) and the oldest held ``received_at``."""

        async def run(conn: Conn) -> QuarantineStats:
            counts = dict.fromkeys(STATUSES, 0)
            cur = await conn.execute("SELECT status, count(*) AS n FROM messages GROUP BY status")
            for row in await cur.fetchall():
                counts[row["status"]] = int(row["n"])
            cur = await conn.execute(
                "SELECT min(received_at) AS oldest FROM messages WHERE status = %s", (HELD,)
            )
            oldest = (await cur.fetchone() or {"oldest": None})["oldest"]
            return QuarantineStats(counts=counts, oldest_held_at=oldest)

        return await self._in_transaction("stats", run)

    async def check_writable(self) -> None:
        """Commit a real write (one probe row); raises StoreError if it fails."""

        async def run(conn: Conn) -> None:
            await conn.execute(
                "INSERT INTO probe (id, at) VALUES (1, %s) "
                "ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                (self._clock(),),
            )

        await self._in_transaction("write check", run)

    # -- split ledger -----------------------------------------------------

    async def copies_done(self, key: str) -> set[str]:
        """Ids of the copies of split ``key`` already delivered."""
        return await self._call("ledger read", lambda c: pg_sql.copies_done(c, key))

    async def record_copy(self, key: str, copy_id: str) -> None:
        """Record a delivered copy; committed before it returns; twice is harmless."""
        await self.record_copies(key, (copy_id,))

    async def record_copies(self, key: str, copy_ids: Sequence[str]) -> None:
        """Record several entries of ``key`` in one transaction (all or none)."""
        ids = tuple(copy_ids)
        now = self._clock()
        await self._in_transaction("ledger write", lambda c: pg_sql.record_copies(c, key, ids, now))

    # -- audit ------------------------------------------------------------

    async def add_audit(
        self, actor: str, action: str, target: str, result: str, detail: str = ""
    ) -> None:
        """Append one audit entry; committed before it returns."""
        entry = (actor, action, target, result, detail)
        now = self._clock()
        await self._in_transaction("audit write", lambda c: pg_sql.add_audit(c, now, entry))

    async def list_audit(
        self, limit: int = 100, target: str | None = None
    ) -> builtins.list[AuditEntry]:
        """Audit entries newest first, optionally only about ``target``."""
        return await self._call("audit read", lambda c: pg_sql.list_audit(c, limit, target))


async def pg_schema_version(url: str, options: PgOptions) -> int:
    """The schema version of the database at ``url`` (0: empty), changing nothing."""
    where = describe(url)
    try:
        async with asyncio.timeout(options.connect_timeout + options.statement_timeout):
            conn = await psycopg.AsyncConnection.connect(
                build_conninfo(url, options), autocommit=True, row_factory=psycopg.rows.dict_row
            )
            async with conn:
                return await schema_version(conn, where)
    except _DRIVER_ERRORS as exc:
        raise _translate(where, "status", exc) from exc
