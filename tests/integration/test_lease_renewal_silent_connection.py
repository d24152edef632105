"""A holder that is still working keeps its lease when one renewal gets no answer.

One renewal goes out on a pooled PostgreSQL connection that then falls silent
(a half-open connection, a black-holed route: the proxy passes the statement
on and swallows everything after it).  Before, the holder waited for that
renewal until the store's deadline and psycopg's cancel attempts (seconds
past the lease), then slept another third of the lease: the lease ran out
and another instance took the key over while the holder was still
delivering.  Now a renewal that has not answered within half of what is left
of the lease is abandoned and tried again on another connection.

Real private PostgreSQL, real TCP proxy; the other instance is a second store
on the same database, trying to take the key over all along.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import psycopg
import pytest
import structlog

from relay.actions.split_claims import SplitClaims
from relay.quarantine.pg import PgStore
from tests.helpers.pg_cut_proxy import CutProxy
from tests.helpers.postgres import PgCluster
from tests.helpers.waiting import wait_until
from tests.integration.conftest import pg_options

KEY = "split-key-renewal"
LEASE = 3.0


@pytest.fixture
async def proxy(pg_cluster: PgCluster) -> AsyncIterator[CutProxy]:
    cut = await CutProxy(pg_cluster.port).start()
    try:
        yield cut
    finally:
        await cut.stop()


def _expires_at(pg_cluster: PgCluster, dbname: str) -> float:
    with psycopg.connect(pg_cluster.url(dbname), password=pg_cluster.password) as conn:
        row = conn.execute("SELECT expires_at FROM leases WHERE key = %s", (KEY,)).fetchone()
        assert row is not None
        return float(row[0])


async def test_a_renewal_lost_on_a_silent_connection_does_not_let_the_lease_lapse(
    pg_cluster: PgCluster, proxy: CutProxy
) -> None:
    dbname = pg_cluster.create_database()
    via_proxy = pg_cluster.url(dbname).replace(f":{pg_cluster.port}/", f":{proxy.port}/")
    # Deadline of one store call: 1 + 2 = 3 s, as long as the lease.
    holder = PgStore(via_proxy, pg_options(pg_cluster, connect_timeout=1, statement_timeout=2))
    other = PgStore(pg_cluster.url(dbname), pg_options(pg_cluster))
    await holder.open()
    await other.open()
    claims = SplitClaims(holder, lease=LEASE, wait=0, log=structlog.get_logger())
    try:
        lease = await claims.acquire(KEY, "q-holder")
        first_expiry = await asyncio.to_thread(_expires_at, pg_cluster, dbname)
        proxy.arm(b"UPDATE leases SET expires_at", hang=True)
        stolen = None
        async with claims.holding(lease, "q-holder"):  # the holder is "delivering" meanwhile
            await wait_until(lambda: proxy.cuts == 1, "a renewal went out and got no answer")
            deadline = time.monotonic() + 3 * LEASE  # bounded: well past the old lapse
            while time.monotonic() < deadline:
                stolen = await other.acquire_lease(KEY, "other-instance", LEASE)
                if stolen is not None:
                    break  # taken over while the holder works: a copy would be sent twice
                if await asyncio.to_thread(_expires_at, pg_cluster, dbname) > first_expiry:
                    break  # renewed by a later try
                await asyncio.sleep(0.05)
            assert stolen is None, "the other instance took the key over from a working holder"
            assert await asyncio.to_thread(_expires_at, pg_cluster, dbname) > first_expiry
            await holder.record_copies_fenced(lease, ["d-someone"])  # still the holder
        assert "d-someone" in await other.copies_done(KEY)
    finally:
        await proxy.stop()  # ends the silent connection, so the pool can close
        await holder.close()
        await other.close()
