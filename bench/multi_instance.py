#!/usr/bin/env python3
"""Split exactly once across two ``ccguard serve`` processes on one database.

Not part of the test suite.  Two real instances (A and B, own SMTP and admin
ports, one database: an SQLite file, or with ``--backend postgresql`` a
database on a private PostgreSQL cluster started here as the tests do, see
tests/helpers/postgres.py) and a real aiosmtpd upstream on 127.0.0.1 in this process
that counts every copy per recipient.  Scenarios, ``--runs`` each, every run
with its own message (own Message-ID, own recipients):

* ``defer``: the upstream defers (451 at DATA) the copy of one recipient; the
  client's retry goes through the other instance.
* ``race``: the same message is sent through A and B at the same moment (two
  retries of a client's queue that overlap).
* ``kill``: the instance handling the message is SIGKILLed at its next word to
  the upstream after the 250 for copy *k* (k drawn 1..4), i.e. just outside the
  remaining window of docs/actions.md; the client retries through the other
  instance (until 250, at most 5 tries) and the killed one is restarted.

Prints "N duplicates, M missing" per scenario.  Every loop is bounded; every
process started is stopped.

Usage:
  python bench/multi_instance.py --runs 20
  python bench/multi_instance.py --runs 20 --backend postgresql
  # the tree before leases, for comparison (a copy of it with this script and
  # tests/helpers/{instances,multi}.py added):
  python /tmp/base/bench/multi_instance.py --runs 20 --old-config
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.instances import (  # noqa: E402
    Instance,
    start_instance,
    stop_instance,
    wait_ready,
    write_instance,
)
from tests.helpers.kill_upstream import KillingUpstream  # noqa: E402
from tests.helpers.multi import SharedDatabase, send  # noqa: E402
from tests.helpers.postgres import PgCluster  # noqa: E402
from tests.helpers.upstream import RecordingUpstream  # noqa: E402


def rcpts(run: str) -> list[str]:
    """A run's recipients: 3 external (one copy each), 2 internal (one copy together)."""
    ext = [f"g{i}-{run}@example.{'com' if i % 2 else 'net'}" for i in (1, 2, 3)]
    return [*ext, f"ia-{run}@example.org", f"ib-{run}@example.org"]


def message(run: str) -> bytes:
    people = rcpts(run)
    return (
        f"From: Ann <ann@example.org>\r\nTo: {', '.join(people[:3])}\r\n"
        f"Cc: {', '.join(people[3:])}\r\nSubject: run {run}\r\n"
        f"Message-ID: <{run}@example.org>\r\n\r\nHello, run {run}.\r\n"
    ).encode()


class Tally:
    """Duplicates and missing recipients over a scenario's runs."""

    def __init__(self, name: str) -> None:
        self.name, self.duplicates, self.missing, self.runs, self.bad_runs = name, 0, 0, 0, 0

    def add(self, wanted: list[str], got: Counter[str]) -> None:
        dup = sum(max(0, got[r] - 1) for r in wanted)
        miss = sum(1 for r in wanted if got[r] == 0)
        self.duplicates += dup
        self.missing += miss
        self.runs += 1
        self.bad_runs += bool(dup or miss)

    def line(self) -> str:
        return (
            f"{self.name}: {self.runs} runs, {self.duplicates} duplicates, {self.missing} missing"
            f" ({self.bad_runs} runs with either)"
        )


def defer_copy_of(victim: str) -> Callable[[Any], str | None]:
    """A data_hook deferring (451) every copy that goes to ``victim``."""

    def hook(envelope: Any) -> str | None:
        return "451 4.3.0 Try again later" if victim in envelope.rcpt_tos else None

    return hook


async def retry_until_250(instance: Instance, msg: bytes, people: list[str]) -> list[Any]:
    """A client's queue: resend through ``instance`` until 250 (at most 5 tries)."""
    replies: list[Any] = []
    for _ in range(5):
        reply = await asyncio.to_thread(send, instance, msg, people)
        replies.append(reply)
        if reply is not None and reply[0] == 250:
            break
    return replies


#: ``--old-config``: no key the tree before leases does not know (for a comparison run).
NEW_KEYS: dict[str, Any] = {"claim_lease": 2, "claim_wait": 10}


def pair(folder: Path, port: int, shared: SharedDatabase) -> list[Instance]:
    return [
        write_instance(folder, name, upstream_port=port, database=shared.database,
                       env=shared.env(), **NEW_KEYS)
        for name in ("a", "b")
    ]  # fmt: skip


async def up(instances: list[Instance]) -> None:
    for instance in instances:
        if instance.proc is None:
            start_instance(instance)
    for instance in instances:
        await asyncio.to_thread(wait_ready, instance)


def counted(upstream: RecordingUpstream, people: list[str]) -> Counter[str]:
    return Counter(r for m in upstream.messages for r in m.rcpt_tos if r in people)


async def defer_and_race(folder: Path, runs: int, shared: SharedDatabase) -> tuple[Tally, Tally]:
    upstream = await RecordingUpstream().start()
    instances = pair(folder, upstream.port, shared)
    defer, race = Tally("defer"), Tally("race")
    try:
        await up(instances)
        for n in range(runs):
            first, other = instances[n % 2], instances[1 - n % 2]
            run = f"d{n}"
            people, victim = rcpts(run), random.choice(rcpts(run)[:3])
            upstream.data_hook = defer_copy_of(victim)
            await asyncio.to_thread(send, first, message(run), people)
            upstream.data_hook = None
            await retry_until_250(other, message(run), people)
            defer.add(people, counted(upstream, people))
        upstream.data_delay = 0.05
        for n in range(runs):
            run = f"r{n}"
            people = rcpts(run)
            await asyncio.gather(
                *(asyncio.to_thread(send, i, message(run), people) for i in instances)
            )
            race.add(people, counted(upstream, people))
    finally:
        for instance in instances:
            stop_instance(instance)
        await upstream.stop()
    return defer, race


async def kill(folder: Path, runs: int, shared: SharedDatabase) -> Tally:
    killer = await KillingUpstream(shared.database, shared.password).start()
    instances = pair(folder, killer.port, shared)
    tally = Tally("kill")
    try:
        for n in range(runs):
            await up(instances)
            victim, other = instances[n % 2], instances[1 - n % 2]
            run, copy = f"k{n}", random.randint(1, 4)
            people = rcpts(run)
            assert victim.proc is not None
            killer.arm(victim.proc, copy)
            await asyncio.to_thread(send, victim, message(run), people)
            stop_instance(victim)  # reaps the killed process (or stops a survivor)
            await retry_until_250(other, message(run), people)
            tally.add(people, Counter(r for r in killer.copies.elements() if r in people))
    finally:
        for instance in instances:
            stop_instance(instance)
        await killer.stop()
    return tally


def database(folder: Path, cluster: PgCluster | None) -> SharedDatabase:
    """An SQLite file in ``folder``, or a new database on ``cluster``."""
    if cluster is None:
        return SharedDatabase(folder / "shared.db")
    return SharedDatabase(cluster.url(cluster.create_database()), cluster.password)


async def scenarios(runs: int, cluster: PgCluster | None) -> list[Tally]:
    """defer, race and kill, ``runs`` each, each phase on a database of its own."""
    from relay.credentials.users import UserDB  # users file for the admin side

    with tempfile.TemporaryDirectory(prefix="ccguard-multi-") as tmp:
        base = Path(tmp)
        for sub in ("dr", "k"):
            (base / sub).mkdir()
            UserDB(base / sub / "users.json").set_password("alice", "not used by the bench")
        dr = await defer_and_race(base / "dr", runs, database(base / "dr", cluster))
        return [*dr, await kill(base / "k", runs, database(base / "k", cluster))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--old-config", action="store_true", help="omit claim_lease, claim_wait, session_key_file"
    )
    args = parser.parse_args()
    if args.old_config:
        NEW_KEYS.clear()
        NEW_KEYS["shared_key"] = False
    started = time.monotonic()
    cluster = PgCluster("bench").init() if args.backend == "postgresql" else None
    try:
        if cluster is not None:
            cluster.start()
        tallies = await scenarios(args.runs, cluster)
    finally:
        if cluster is not None:
            cluster.destroy()
    print(f"backend: {args.backend}")
    for tally in tallies:
        print(tally.line())
    total_dup = sum(t.duplicates for t in tallies)
    total_miss = sum(t.missing for t in tallies)
    print(f"total: {total_dup} duplicates, {total_miss} missing "
          f"in {time.monotonic() - started:.0f} s")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
