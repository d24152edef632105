"""Durability across SIGKILL, clear StoreErrors for broken files, schema versions, retention."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from relay.errors import StoreError
from relay.quarantine import SqliteStore, run_retention
from relay.quarantine.sqlite_schema import APPLICATION_ID, SCHEMA_VERSION
from relay.settings import QuarantineSettings, SplitSettings
from tests.helpers.mounts import read_only_bind
from tests.helpers.quarantine_store import RAW, new_message

REPO = Path(__file__).resolve().parents[2]

_WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from relay.quarantine import SqliteStore
    from tests.helpers.quarantine_store import new_message

    async def main():
        store = SqliteStore(sys.argv[1])
        await store.open()
        mid = await store.put(new_message())
        await store.record_copy("split-key", "copy-1")
        print(mid, flush=True)
        time.sleep(60)  # blocks the loop: nothing more can happen before the kill

    asyncio.run(main())
    """
)


async def test_put_survives_sigkill_right_after_it_returns(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        mid = proc.stdout.readline().decode().strip()
        assert mid, "writer printed no id"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert Path(f"{db}-wal").exists()  # not checkpointed: recovery comes from the WAL
    store = SqliteStore(db)
    await store.open()
    try:
        got = await store.get(mid)
        assert got is not None and got.message == RAW and got.status == "held"
        assert await store.copies_done("split-key") == {"copy-1"}
    finally:
        await store.close()


async def test_directory_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a directory")
    store = SqliteStore(tmp_path / "afile" / "q.db")
    with pytest.raises(StoreError, match=r"open failed: .*afile exists but is not a directory"):
        await store.open()


async def test_directory_that_cannot_be_created_below_a_file(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a directory")
    store = SqliteStore(tmp_path / "afile" / "deeper" / "q.db")
    with pytest.raises(StoreError, match=r"cannot create directory .*deeper: Not a directory"):
        await store.open()


async def test_existing_database_on_a_read_only_mount_says_it_is_not_writable(
    tmp_path: Path,
) -> None:
    (tmp_path / "data").mkdir()
    store = SqliteStore(tmp_path / "data" / "q.db")
    await store.open()
    await store.close()
    ro = tmp_path / "ro"
    with read_only_bind(tmp_path / "data", ro), pytest.raises(StoreError) as info:
        await SqliteStore(ro / "q.db").open()
    assert str(info.value) == (
        f"quarantine store {ro}/q.db: open failed: "
        f"database file {ro}/q.db is not writable: Read-only file system"
    )


async def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    db.write_bytes(b"this is a text file, not SQLite\n" * 200)
    with pytest.raises(StoreError, match="not an SQLite database") as info:
        await SqliteStore(db).open()
    assert str(db) in str(info.value)
    assert db.read_bytes().startswith(b"this is a text file")  # left untouched


async def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (name TEXT)")
    conn.close()
    with pytest.raises(StoreError, match="not a ccguard one"):
        await SqliteStore(db).open()


async def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    store = SqliteStore(db)
    await store.open()
    await store.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 1} is newer"):
        await SqliteStore(db).open()


async def test_locked_database_gives_store_error(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    store = SqliteStore(db, busy_timeout=0.2)
    await store.open()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match=r"put failed: .*locked"):
            await store.put(new_message())
        with pytest.raises(StoreError, match="write check failed"):
            await store.check_writable()
    finally:
        other.execute("ROLLBACK")
        other.close()
    await store.put(new_message())  # works again once the lock is gone
    await store.close()


async def test_full_database_gives_store_error(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "q.db")
    await store.open()

    def cap(conn: sqlite3.Connection) -> None:
        # SQLite reports a page cap exactly like a full disk (SQLITE_FULL).
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")

    await store._call("cap", cap)
    try:
        with pytest.raises(StoreError, match=r"put failed: .*full"):
            await store.put(new_message(message=RAW * 2000))
        assert (await store.list()).total == 0
    finally:
        await store.close()


class RecordingLog:
    """A real (tiny) logger that keeps what it was given."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))

    def error(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))


async def test_retention_task_purges_and_logs_counts(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "q.db")
    await store.open()
    now = 1_800_000_000.0
    old = await store.put(new_message(received_at=now - 3 * 86400))
    fresh = await store.put(new_message(received_at=now - 3600))
    await store.record_copy("old-key", "c")
    log, stop = RecordingLog(), asyncio.Event()
    settings = QuarantineSettings(retention_days=2, purge_interval=0.05)
    split = SplitSettings(ledger_retention_hours=1)
    # The ledger row was written at real time; the task's clock is 2 h past it.
    task = asyncio.create_task(run_retention(store, settings, split, log, stop, clock=lambda: now))
    try:
        async with asyncio.timeout(5):
            while len(log.events) < 2:
                await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert log.events[0] == ("quarantine_purged", {"messages": 1, "ledger_rows": 1})
    assert log.events[1] == ("quarantine_purged", {"messages": 0, "ledger_rows": 0})
    assert await store.get(old) is None and await store.get(fresh) is not None
    await store.close()


async def test_retention_task_survives_store_failure(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "q.db")  # never opened: every purge fails
    log, stop = RecordingLog(), asyncio.Event()
    settings = QuarantineSettings(purge_interval=0.02)
    task = asyncio.create_task(run_retention(store, settings, SplitSettings(), log, stop))
    async with asyncio.timeout(5):
        while len(log.events) < 2:
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    event, fields = log.events[0]
    assert event == "quarantine_purge_failed" and "not open" in fields["error"]
