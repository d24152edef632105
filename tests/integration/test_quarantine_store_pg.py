"""PostgreSQL-only behaviour on a real private cluster: outages, timeouts, passwords, migration."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import psycopg
import pytest

from relay.errors import StoreError
from relay.quarantine.pg import PgStore
from relay.quarantine.pg_schema import MIGRATIONS, SCHEMA_VERSION
from tests.helpers.postgres import PgCluster
from tests.helpers.process import ROOT
from tests.helpers.quarantine_store import RAW, Clock, new_message
from tests.helpers.waiting import wait_until
from tests.integration.conftest import pg_options


async def test_database_down_gives_store_error_fast_and_loses_nothing(
    pg_outage_cluster: PgCluster,
) -> None:
    cluster = pg_outage_cluster
    url = cluster.url(cluster.create_database())
    store = PgStore(url, pg_options(cluster, connect_timeout=1.0))
    await store.open()
    try:
        kept = await store.put(new_message())
        await store.record_copy("split-key", "copy-1")
        cluster.stop()
        try:
            for attempt in (store.put(new_message()), store.check_writable()):
                started = time.monotonic()
                with pytest.raises(StoreError, match="failed") as info:
                    await attempt
                assert time.monotonic() - started < store.deadline + 1.0
                assert "127.0.0.1" in str(info.value) and cluster.password not in str(info.value)
            with pytest.raises(StoreError):
                await store.copies_done("split-key")
        finally:
            cluster.start()
        # Back up: the same store (pool) works again within a few client retries.
        await _until_writable(store, attempts=10)
        got = await store.get(kept)
        assert got is not None and got.message == RAW
        assert await store.copies_done("split-key") == {"copy-1"}
        await store.check_writable()
        assert (await store.stats()).held == 1
    finally:
        await store.close()


async def _until_writable(store: PgStore, attempts: int) -> int:
    """Retry like an SMTP client after a 451: at most ``attempts`` bounded tries."""
    for attempt in range(1, attempts + 1):
        try:
            await store.check_writable()
            return attempt
        except StoreError:
            continue
    raise AssertionError(f"the store did not come back after {attempts} attempts")


async def test_open_while_the_database_is_down_is_a_store_error(pg_cluster: PgCluster) -> None:
    url = f"postgresql://ccguard_test@127.0.0.1:{_closed_port()}/nothing"
    store = PgStore(url, pg_options(pg_cluster, connect_timeout=1.0))
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"quarantine store postgresql://.*open failed"):
        await store.open()
    assert time.monotonic() - started < store.deadline + 1.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_slow_statement_is_cut_by_statement_timeout(pg_cluster: PgCluster) -> None:
    url = pg_cluster.url(pg_cluster.create_database())
    store = PgStore(url, pg_options(pg_cluster, statement_timeout=1.0))
    await store.open()
    mid = await store.put(new_message())
    locker = await psycopg.AsyncConnection.connect(url, password=pg_cluster.password)
    try:
        async with locker.transaction():
            await locker.execute("SELECT 1 FROM messages WHERE id = %s FOR UPDATE", (mid,))
            started = time.monotonic()
            with pytest.raises(StoreError, match="claim failed: the statement timed out"):
                await store.claim(mid, "alice")
            assert time.monotonic() - started < 3.0
        assert (await store.claim(mid, "alice")).claimed_by == "alice"  # lock gone: works
    finally:
        await locker.close()
        await store.close()


async def test_password_from_pgpassword_and_a_wrong_one_refused(
    pg_cluster: PgCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = pg_cluster.url(pg_cluster.create_database())
    no_file = pg_options(pg_cluster, password_file=None)
    monkeypatch.setenv("PGPASSWORD", "wrong-password")
    with pytest.raises(StoreError, match="password authentication failed"):
        await PgStore(url, no_file).open()
    monkeypatch.setenv("PGPASSWORD", pg_cluster.password)
    store = PgStore(url, no_file)
    await store.open()
    try:
        assert await store.get(await store.put(new_message())) is not None
    finally:
        await store.close()


async def test_simultaneous_first_starts_migrate_once(pg_cluster: PgCluster) -> None:
    for _ in range(5):
        url = pg_cluster.url(pg_cluster.create_database())
        stores = [PgStore(url, pg_options(pg_cluster)) for _ in range(6)]
        try:
            await asyncio.gather(*(s.open() for s in stores))
            ids = await asyncio.gather(*(s.put(new_message()) for s in stores))
            assert len(set(ids)) == 6
        finally:
            await asyncio.gather(*(s.close() for s in stores))
        with psycopg.connect(url, password=pg_cluster.password) as conn:
            rows = conn.execute("SELECT version FROM ccguard_schema").fetchall()
        assert rows == [(SCHEMA_VERSION,)]


async def test_a_version_1_database_migrates_to_leases_keeping_its_messages(
    pg_cluster: PgCluster,
) -> None:
    url = pg_cluster.url(pg_cluster.create_database())
    with psycopg.connect(url, password=pg_cluster.password) as conn:  # what v1 created
        conn.execute("CREATE TABLE ccguard_schema (version integer NOT NULL)")
        conn.execute("INSERT INTO ccguard_schema (version) VALUES (1)")
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
    old = PgStore(url, pg_options(pg_cluster), migrate=False)
    with pytest.raises(StoreError, match=rf"schema version 1.*needs {SCHEMA_VERSION}"):
        await old.open()
    store = PgStore(url, pg_options(pg_cluster))
    try:
        await store.open()  # v1 had no leases table
        mid = await store.put(new_message())
        lease = await store.acquire_lease("split:abc", "holder-a", 30)
        assert lease is not None and lease.token == 1
        await store.record_copies_fenced(lease, ["d:g1@example.com"])
        assert await store.copies_done("split:abc") == {"d:g1@example.com"}
        assert (await store.get(mid)) is not None
    finally:
        await store.close()
    with psycopg.connect(url, password=pg_cluster.password) as conn:
        assert conn.execute("SELECT version FROM ccguard_schema").fetchall() == [(SCHEMA_VERSION,)]


async def test_without_migrate_an_empty_database_is_refused(pg_cluster: PgCluster) -> None:
    url = pg_cluster.url(pg_cluster.create_database())
    with pytest.raises(StoreError, match=r"schema version 0.*ccguard db migrate"):
        await PgStore(url, pg_options(pg_cluster), migrate=False).open()


_WRITER = """
import asyncio, sys, time
from relay.quarantine.pg import PgStore
from relay.quarantine.pg_conn import PgOptions
from tests.helpers.quarantine_store import new_message

async def main():
    store = PgStore(sys.argv[1], PgOptions(password_file=sys.argv[2]))
    await store.open()
    mid = await store.put(new_message())
    await store.record_copy("split-key", "copy-1")
    print(mid, flush=True)
    time.sleep(60)  # blocks the loop: nothing more can happen before the kill

asyncio.run(main())
"""


async def test_put_survives_sigkill_right_after_it_returns(pg_cluster: PgCluster) -> None:
    url = pg_cluster.url(pg_cluster.create_database())
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, url, str(pg_cluster.password_file)],
        cwd=ROOT, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        mid = proc.stdout.readline().decode().strip()
        assert mid, "writer printed no id"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    store = PgStore(url, pg_options(pg_cluster))
    await store.open()
    try:
        got = await store.get(mid)
        assert got is not None and got.message == RAW and got.status == "held"
        assert await store.copies_done("split-key") == {"copy-1"}
    finally:
        await store.close()


async def test_a_foreign_messages_table_is_refused(pg_cluster: PgCluster) -> None:
    url = pg_cluster.url(pg_cluster.create_database())
    with psycopg.connect(url, password=pg_cluster.password, autocommit=True) as conn:
        conn.execute("CREATE TABLE messages (x int)")
    with pytest.raises(StoreError, match="not ccguard's"):
        await PgStore(url, pg_options(pg_cluster)).open()


async def test_a_schema_of_its_own_through_the_url_options(pg_cluster: PgCluster) -> None:
    url = pg_cluster.url(pg_cluster.create_database())
    with psycopg.connect(url, password=pg_cluster.password, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA ccguard")
    store = PgStore(url + "?options=-csearch_path%3Dccguard", pg_options(pg_cluster))
    await store.open()
    try:
        await store.put(new_message())
    finally:
        await store.close()
    with psycopg.connect(url, password=pg_cluster.password) as conn:
        count = conn.execute("SELECT count(*) FROM ccguard.messages").fetchone()
        public = conn.execute("SELECT to_regclass('public.messages')").fetchone()
    assert count == (1,) and public == (None,)


async def test_a_take_over_waits_for_a_fenced_write_in_flight_and_then_sees_it(
    pg_cluster: PgCluster,
) -> None:
    # The old holder's fenced write is held mid-transaction (after its FOR SHARE on
    # the lease row) by a table lock on the ledger; the take-over must wait for it,
    # or the new holder would read a ledger without that copy and send it again.
    url = pg_cluster.url(pg_cluster.create_database())
    clock = Clock()
    old_store = PgStore(url, pg_options(pg_cluster), clock=clock)
    new_store = PgStore(url, pg_options(pg_cluster), clock=clock)
    await old_store.open()
    await new_store.open()
    blocker = psycopg.connect(url, password=pg_cluster.password)
    watcher = psycopg.connect(url, password=pg_cluster.password, autocommit=True)
    try:
        old = await old_store.acquire_lease("split:k", "holder-a", 30)
        assert old is not None
        clock.now += 30  # expired: a take-over may happen at any moment now
        blocker.execute("LOCK TABLE split_ledger IN EXCLUSIVE MODE")
        write = asyncio.create_task(old_store.record_copies_fenced(old, ["d:g1@example.com"]))
        await wait_until(lambda: _lock_waiters(watcher) == 1, "the fenced write waits")
        take = asyncio.create_task(new_store.acquire_lease("split:k", "holder-b", 30))
        await wait_until(lambda: _lock_waiters(watcher) == 2, "the take-over waits")
        assert not write.done() and not take.done()
        blocker.commit()
        await write  # it held the key all along: recorded
        new = await take
        assert new is not None and (new.token, new.taken_over) == (2, True)
        assert await new_store.copies_done("split:k") == {"d:g1@example.com"}
    finally:
        blocker.close()
        watcher.close()
        await old_store.close()
        await new_store.close()


def _lock_waiters(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    ).fetchone()
    return int(row[0]) if row else 0
