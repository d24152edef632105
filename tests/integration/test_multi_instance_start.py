"""Several processes opening (creating) one fresh SQLite file at the same moment.

Seen before the fix: of two ``ccguard serve`` started together, one sometimes
died at start with ``cannot start … open failed: database is locked`` — SQLite
answers BUSY at once, without waiting out the busy timeout, when two
connections switch a new file to WAL or one reads while the other creates the
schema.  The openers are released together by a barrier so that the race is
hit often (about one round in ten failed on the old code); every one of them
must open the store and write.  Then real ``ccguard serve`` processes started
together must all answer /readyz.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.synchronize
from multiprocessing.queues import Queue
from pathlib import Path

from relay.quarantine.sqlite import SqliteStore
from tests.helpers.instances import start_instance, stop_instance, wait_ready, write_instance
from tests.helpers.upstream import RecordingUpstream

OPEN_ROUNDS = 100
OPENERS = 2
SERVE_ROUNDS = 4
SERVERS = 3


def _open_and_write(
    path: Path, barrier: multiprocessing.synchronize.Barrier, out: Queue[str]
) -> None:
    async def run() -> str:
        store = SqliteStore(path)
        barrier.wait(timeout=30)
        try:
            await store.open()
            await store.check_writable()
            return "ok"
        except Exception as exc:  # the message is what the test reports
            return repr(exc)
        finally:
            await store.close()

    out.put(asyncio.run(run()))


def test_processes_opening_a_fresh_file_together_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    failures: list[str] = []
    for round_ in range(OPEN_ROUNDS):
        path = tmp_path / f"r{round_}" / "shared.db"
        barrier, out = ctx.Barrier(OPENERS), ctx.Queue()
        procs = [
            ctx.Process(target=_open_and_write, args=(path, barrier, out)) for _ in range(OPENERS)
        ]
        for proc in procs:
            proc.start()
        results = [out.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=30)
        failures += [r for r in results if r != "ok"]
    assert failures == []


async def test_serve_processes_started_together_on_a_fresh_file_all_come_up(
    tmp_path: Path,
) -> None:
    upstream = await RecordingUpstream().start()
    try:
        for round_ in range(SERVE_ROUNDS):
            folder = tmp_path / f"round{round_}"
            folder.mkdir()
            database = folder / "shared.db"
            instances = [
                write_instance(folder, f"i{n}", upstream_port=upstream.port, database=database)
                for n in range(SERVERS)
            ]
            for instance in instances:
                start_instance(instance)
            try:
                for instance in instances:
                    await asyncio.to_thread(wait_ready, instance)
            finally:
                for instance in instances:
                    stop_instance(instance)
    finally:
        await upstream.stop()
