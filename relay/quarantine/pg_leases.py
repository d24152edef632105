"""Leases (claims with expiry and a fencing token) and release-claim renewal on PostgreSQL.

The same design as :mod:`relay.quarantine.sqlite_leases`: one row per key in
``leases``, taken by one upsert whose update only happens if the row is free
or expired, the fence being the holder and token, never the clock.

Serialisation: two upserts of one key are serialised by the row (or, for a
new key, by the primary-key index), so exactly one wins.  A fenced ledger
write first locks the lease row ``FOR SHARE``: a take-over (an ``UPDATE`` of
that row) waits until the write has committed, and a write that comes after
the take-over no longer finds its holder and token and records nothing.

Time: "now" is the DATABASE's clock (``statement_timestamp()``), so
instances on hosts whose clocks disagree still agree on when a lease or a
release claim expires.  Each helper takes ``now``: ``None`` in production
(the database clock), a number only when a test injected a clock into
:class:`~relay.quarantine.pg.PgStore`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from relay.errors import LeaseLostError
from relay.quarantine.pg_sql import Conn, expire_ledger, record_copies
from relay.quarantine.store import HELD, Lease

__all__ = [
    "DB_NOW",
    "PgLeaseMethods",
    "acquire",
    "database_now",
    "drop",
    "expire_leases",
    "record_fenced",
    "renew",
    "renew_claim",
]

DB_NOW = (
    "coalesce(%(now)s::double precision, "
    "extract(epoch from statement_timestamp())::double precision)"
)
"""The injected ``now`` if any, else the database's clock (epoch seconds)."""

_ACQUIRE = (
    "INSERT INTO leases (key, holder, token, expires_at, taken_over) "
    f"VALUES (%(key)s, %(holder)s, 1, {DB_NOW} + %(ttl)s, false) "
    "ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, token = leases.token + 1, "
    "expires_at = excluded.expires_at, "
    "taken_over = (leases.holder IS NOT NULL) "
    f"WHERE leases.holder IS NULL OR leases.expires_at <= {DB_NOW} "
    "RETURNING token, taken_over"
)
_MINE = "key = %(key)s AND holder = %(holder)s AND token = %(token)s"


def _hint(key: str) -> str:
    # Keys are hashes already (split_key) or "release:<id>": short enough to name.
    return key[:40]


def _mine(lease: Lease) -> dict[str, object]:
    return {"key": lease.key, "holder": lease.holder, "token": lease.token}


async def database_now(conn: Conn, now: float | None) -> float:
    """``now`` if a clock was injected, else the database's clock."""
    if now is not None:
        return now
    cur = await conn.execute(f"SELECT {DB_NOW} AS now", {"now": None})
    row = await cur.fetchone()
    assert row is not None
    return float(row["now"])


async def acquire(conn: Conn, key: str, holder: str, ttl: float, now: float | None) -> Lease | None:
    """Take ``key`` for ``holder`` for ``ttl`` seconds unless a live lease exists."""
    cur = await conn.execute(_ACQUIRE, {"key": key, "holder": holder, "ttl": ttl, "now": now})
    row = await cur.fetchone()
    if row is None:
        return None
    return Lease(
        key=key, holder=holder, token=int(row["token"]), taken_over=bool(row["taken_over"])
    )


async def renew(conn: Conn, lease: Lease, ttl: float, now: float | None) -> bool:
    """Push the expiry of ``lease`` to ``ttl`` seconds from now; False if the key changed hands."""
    cur = await conn.execute(
        f"UPDATE leases SET expires_at = {DB_NOW} + %(ttl)s WHERE {_MINE}",
        {**_mine(lease), "ttl": ttl, "now": now},
    )
    return cur.rowcount == 1


async def drop(conn: Conn, lease: Lease) -> None:
    """Free the key (the row stays, so the next token is still larger)."""
    await conn.execute(
        f"UPDATE leases SET holder = NULL, expires_at = 0 WHERE {_MINE}", _mine(lease)
    )


async def record_fenced(
    conn: Conn, lease: Lease, copy_ids: Sequence[str], recorded_at: float
) -> None:
    """Ledger entries of ``lease.key`` if ``lease`` still holds it; the caller's
    transaction keeps the lease row locked until the entries are committed."""
    cur = await conn.execute(f"SELECT 1 AS mine FROM leases WHERE {_MINE} FOR SHARE", _mine(lease))
    if await cur.fetchone() is None:
        raise LeaseLostError(_hint(lease.key), lease.token)
    await record_copies(conn, lease.key, copy_ids, recorded_at)


async def expire_leases(conn: Conn, cutoff_epoch: float) -> int:
    """Forget free or long-expired leases (part of the ledger purge, same transaction)."""
    cur = await conn.execute("DELETE FROM leases WHERE expires_at < %s", (cutoff_epoch,))
    return int(cur.rowcount)


async def renew_claim(conn: Conn, message_id: str, actor: str, now: float | None) -> bool:
    """Refresh ``actor``'s release claim on a held message; False if it is not theirs."""
    cur = await conn.execute(
        f"UPDATE messages SET claimed_at = {DB_NOW} "
        "WHERE id = %(id)s AND claimed_by = %(actor)s AND status = %(held)s",
        {"id": message_id, "actor": actor, "held": HELD, "now": now},
    )
    return cur.rowcount == 1


T = TypeVar("T")


class PgLeaseMethods:
    """The lease, claim-renewal and ledger-purge methods of :class:`~relay.quarantine.pg.PgStore`
    (here so that pg.py stays small); PgStore provides the plumbing below."""

    _clock: Callable[[], float]
    _injected_clock: Callable[[], float] | None

    if TYPE_CHECKING:

        async def _call(self, what: str, fn: Callable[[Conn], Awaitable[T]]) -> T: ...

        async def _in_transaction(self, what: str, fn: Callable[[Conn], Awaitable[T]]) -> T: ...

    def _injected_now(self) -> float | None:
        """The test clock's time, or None: use the database's clock."""
        return None if self._injected_clock is None else self._injected_clock()

    async def acquire_lease(self, key: str, holder: str, ttl: float) -> Lease | None:
        """Take the lease on ``key`` unless a live one exists (one upsert)."""
        now = self._injected_now()
        return await self._call("lease", lambda c: acquire(c, key, holder, ttl, now))

    async def renew_lease(self, lease: Lease, ttl: float) -> bool:
        """Extend ``lease`` by ``ttl`` from now; False if the key changed hands."""
        now = self._injected_now()
        return await self._call("lease renewal", lambda c: renew(c, lease, ttl, now))

    async def drop_lease(self, lease: Lease) -> None:
        """Give ``lease`` up; no-op if the key changed hands."""
        await self._call("lease drop", lambda c: drop(c, lease))

    async def record_copies_fenced(self, lease: Lease, copy_ids: Sequence[str]) -> None:
        """Ledger entries under ``lease`` in one transaction, refused (LeaseLostError,
        nothing recorded) if the key changed hands."""
        ids, recorded_at = tuple(copy_ids), self._clock()
        await self._in_transaction(
            "ledger write", lambda c: record_fenced(c, lease, ids, recorded_at)
        )

    async def renew_claim(self, message_id: str, actor: str) -> bool:
        """Refresh ``actor``'s claim on a held message; False if it is no longer theirs."""
        now = self._injected_now()
        return await self._call("renew claim", lambda c: renew_claim(c, message_id, actor, now))

    async def expire_ledger(self, cutoff_epoch: float) -> int:
        """Drop split-ledger rows recorded before ``cutoff_epoch`` and leases that
        expired before it (one transaction); returns how many ledger rows."""

        async def run(conn: Conn) -> int:
            count = await expire_ledger(conn, cutoff_epoch)
            await expire_leases(conn, cutoff_epoch)
            return count

        return await self._in_transaction("ledger expire", run)
