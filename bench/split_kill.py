#!/usr/bin/env python3
"""Split exactly-once under SIGKILL: kill ``ccguard serve`` right after the upstream's
250 for one copy, restart it on the same database, retry, count duplicates and losses.

Not part of the test suite.  One real ``ccguard serve`` per code tree (``--tree
NAME=PATH``, its own SQLite file) and one real aiosmtpd upstream on 127.0.0.1 (port
0) in this process that records every copy.  ``kill`` mode: the upstream writes its
250 for copy *k*, lets it reach the socket, busy-waits ``--delay-ms`` and SIGKILLs
ccguard; the script restarts ccguard and resends the message as a client's queue
would, until 250 (at most 3 retries).  Runs alternate between the trees (same load).
``window`` mode: nothing is killed; the upstream times how long after each 250 the
copy's ledger rows are visible in the database file.  Every loop is bounded in count
and time; every process started is stopped.

Usage:
  python bench/split_kill.py --runs 50 --delay-ms 0 --tree old=/tmp/base --tree new=.
  python bench/split_kill.py --mode window --runs 20 --tree old=/tmp/base --tree new=.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import smtplib
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from aiosmtpd.smtp import SMTP

from relay.actions.split import delivered_id

ROOT = Path(__file__).resolve().parents[1]
SENDER = "ann@example.org"
COPIES = 5  # one per external recipient (4), one for both internal ones
_RUN = re.compile(rb"Subject: run-(\d+)-")


def external(run: int) -> tuple[str, ...]:
    """A run's external recipients (its own, so its ledger rows are its own too)."""
    return tuple(f"e{i}-r{run}@example.{'com' if i % 2 else 'net'}" for i in range(1, 5))


def internal(run: int) -> tuple[str, ...]:
    return (f"ia-r{run}@example.org", f"ib-r{run}@example.org")


def rcpts(run: int) -> tuple[str, ...]:
    return external(run) + internal(run)


def message(run: int, tree: str) -> bytes:
    """The client's message of one run: every recipient visible, so it is split."""
    to, cc = ", ".join(external(run)), ", ".join(internal(run))
    return (
        f"From: Ann <{SENDER}>\r\nTo: {to}\r\nCc: {cc}\r\n"
        f"Subject: run-{run}-{tree}\r\nMessage-ID: <run-{run}-{tree}@example.org>\r\n"
        f"\r\nHello, run {run}.\r\n"
    ).encode()


@dataclass
class Trap:
    """Kill ``pid`` after the 250 for copy ``copy`` (1-based) of the current attempt."""

    pid: int
    copy: int
    delay: float
    seen: int = 0
    fired: bool = False


@dataclass
class Upstream:
    """What the upstream accepted, per run and recipient, and the armed trap (if any)."""

    copies: dict[int, Counter[str]] = field(default_factory=dict)
    trap: Trap | None = None
    watch_db: Path | None = None  # window mode: time each copy's ledger rows in this file
    windows: list[float] = field(default_factory=list)
    internal_windows: list[float] = field(default_factory=list)
    timings: set[asyncio.Future[float]] = field(default_factory=set)
    quit_delay: float = 0.0

    def record(self, data: bytes, rcpts: list[str]) -> None:
        found = _RUN.search(data)
        run = int(found.group(1)) if found else -1
        self.copies.setdefault(run, Counter()).update(rcpts)

    async def answered(self, rcpts: list[str]) -> None:
        """Called right after a 250 to DATA has been written to the socket."""
        trap, started = self.trap, time.perf_counter()
        if trap is not None:
            trap.seen += 1
            if trap.seen == trap.copy:
                while time.perf_counter() - started < trap.delay:
                    pass
                os.kill(trap.pid, signal.SIGKILL)
                trap.fired, self.trap = True, None
        elif self.watch_db is not None:  # timed aside: this session goes on meanwhile
            ids = [delivered_id(r) for r in rcpts]
            timing = asyncio.ensure_future(
                asyncio.to_thread(_wait_rows, self.watch_db, ids, started)
            )
            self.timings.add(timing)
            timing.add_done_callback(lambda t: self._timed(t, internal=len(rcpts) > 1))

    def _timed(self, timing: asyncio.Future[float], *, internal: bool) -> None:
        self.timings.discard(timing)
        self.windows.append(timing.result())
        if internal:
            self.internal_windows.append(timing.result())


def _wait_rows(db: Path, ids: list[str], started: float, timeout: float = 5.0) -> float:
    """Seconds from ``started`` until every ``ids`` row is in ``db`` (bounded)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    marks = ",".join("?" * len(ids))
    try:
        while time.perf_counter() - started < timeout:
            query = f"SELECT count(*) FROM split_ledger WHERE copy_id IN ({marks})"
            if conn.execute(query, ids).fetchall()[0][0] == len(ids):  # all: ends the read
                return time.perf_counter() - started
            time.sleep(0)
    finally:
        conn.close()
    return float("inf")


class _Server(SMTP):
    """aiosmtpd's SMTP, telling the upstream when a 250 to DATA is on the wire."""

    def __init__(self, up: Upstream, **kwargs: Any) -> None:
        super().__init__(_Handler(up), **kwargs)
        self.up = up
        self.answered_rcpts: list[str] | None = None

    async def push(self, status: Any) -> None:
        await super().push(status)  # written and drained: the 250 has left this process
        rcpts, self.answered_rcpts = self.answered_rcpts, None
        if rcpts is not None:
            await self.up.answered(rcpts)

    async def smtp_QUIT(self, arg: str) -> None:
        if self.up.quit_delay:  # a busy upstream, slow to say goodbye
            await asyncio.sleep(self.up.quit_delay)
        await super().smtp_QUIT(arg)


class _Handler:
    def __init__(self, up: Upstream) -> None:
        self.up = up

    async def handle_DATA(self, server: _Server, session: Any, envelope: Any) -> str:
        self.up.record(envelope.original_content, list(envelope.rcpt_tos))
        server.answered_rcpts = list(envelope.rcpt_tos)
        return "250 2.0.0 Ok: queued"


async def start_upstream(up: Upstream) -> tuple[asyncio.Server, int]:
    loop = asyncio.get_running_loop()

    def factory() -> _Server:
        return _Server(up, hostname="upstream.test", data_size_limit=None, loop=loop)

    server = await loop.create_server(factory, host="127.0.0.1", port=0)
    return server, server.sockets[0].getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Target:
    """One code tree's ccguard: its config, database, log and running process."""

    name: str
    tree: Path
    folder: Path
    upstream_port: int
    pool_size: int
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    addr: tuple[str, int] = ("127.0.0.1", 0)

    @property
    def db(self) -> Path:
        return self.folder / "ccguard.db"

    def config(self) -> Path:
        path = self.folder / "ccguard.toml"
        path.write_text(
            f'[smtp]\nlisten = "127.0.0.1:{self.port}"\nhostname = "ccguard.test"\n'
            f'[upstream]\nhost = "127.0.0.1"\nport = {self.upstream_port}\nstarttls = "off"\n'
            f"pool_size = {self.pool_size}\n"
            f'[organisation]\ninternal_domains = ["example.org"]\n'
            f'[quarantine]\ndatabase = "{self.db}"\n[admin]\nenabled = false\n'
            f'[logging]\nhash_key = "bench-key"\n'
            f'[[policy.rules]]\nname = "split-all"\nmin_visible_external = 2\naction = "split"\n'
        )
        return path

    def start(self) -> None:
        self.port = free_port()
        self.addr = ("127.0.0.1", self.port)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CCGUARD_")}
        env["PYTHONPATH"] = str(self.tree)
        self.log = self.log or (self.folder / "ccguard.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "serve", "--config", str(self.config())],
            stdout=self.log, stderr=self.log, env=env, cwd=self.tree,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name}: ccguard exited {self.proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(self.addr, 1):
                return
            time.sleep(0.02)
        raise SystemExit(f"{self.name}: ccguard not listening after 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.log is not None:
            self.log.close()
            self.log = None


def send(port: int, data: bytes, to: tuple[str, ...]) -> str:
    """One client attempt: ``ok`` (250), ``deferred`` (4xx) or ``dropped`` (connection lost)."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail(SENDER, list(to), data)
        return "ok"
    except smtplib.SMTPResponseException as exc:
        if 400 <= exc.smtp_code < 500:
            return "deferred"
        raise
    except (smtplib.SMTPServerDisconnected, ConnectionError):
        return "dropped"


@dataclass
class Tally:
    runs: int = 0
    kills: int = 0
    duplicate_runs: int = 0
    extra_copies: int = 0
    lossy_runs: int = 0
    unfinished: int = 0
    by_copy: Counter[int] = field(default_factory=Counter)


async def kill_run(up: Upstream, target: Target, run: int, copy: int, delay: float) -> Counter[str]:
    """One run: send, kill after copy ``copy``'s 250, restart, retry until 250."""
    data = message(run, target.name)
    if target.proc is None or target.proc.poll() is not None:
        await asyncio.to_thread(target.start)
    assert target.proc is not None
    trap = up.trap = Trap(target.proc.pid, copy, delay)
    outcome = await asyncio.to_thread(send, target.port, data, rcpts(run))
    up.trap = None
    if trap.fired:
        await asyncio.to_thread(target.proc.wait, 10)
        await asyncio.to_thread(target.start)
        for _ in range(3):  # the client's queue retrying, bounded
            outcome = await asyncio.to_thread(send, target.port, data, rcpts(run))
            if outcome == "ok":
                break
    got = up.copies.get(run, Counter())
    got["<fired>"] = int(trap.fired)
    got["<finished>"] = int(outcome == "ok")
    return got


def tally(t: Tally, got: Counter[str], run: int, copy: int) -> None:
    t.runs += 1
    t.kills += got["<fired>"]
    t.unfinished += 1 - got["<finished>"]
    extra = sum(max(0, got[r] - 1) for r in rcpts(run))
    lost = sum(1 for r in rcpts(run) if got[r] == 0)
    t.duplicate_runs += extra > 0
    t.extra_copies += extra
    t.lossy_runs += lost > 0
    if extra:
        t.by_copy[copy] += 1


async def kill_mode(up: Upstream, targets: list[Target], runs: int, delay: float) -> None:
    tallies = {t.name: Tally() for t in targets}
    for i in range(runs):
        copy = i % COPIES + 1
        order = targets if i % 2 == 0 else targets[::-1]
        for target in order:
            run = i * len(targets) + targets.index(target)
            tally(tallies[target.name], await kill_run(up, target, run, copy, delay), run, copy)
        print(f"run {i + 1}/{runs}: " + ", ".join(
            f"{n} dup {t.duplicate_runs} lost {t.lossy_runs}" for n, t in tallies.items()
        ), flush=True)  # fmt: skip
    print(f"\nkill {delay * 1000:g} ms after the 250, {COPIES} copies per message, "
          f"kill after copy 1..{COPIES} in turn")  # fmt: skip
    print("| tree | runs | kills | runs with a duplicate | extra copies | runs with a loss "
          "| unfinished | duplicates by killed copy |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for name, t in tallies.items():
        by_copy = " ".join(f"{c}:{n}" for c, n in sorted(t.by_copy.items())) or "-"
        dup = f"{t.duplicate_runs} ({t.duplicate_runs / t.runs:.0%})"
        print(f"| {name} | {t.runs} | {t.kills} | {dup} | {t.extra_copies} | {t.lossy_runs} "
              f"| {t.unfinished} | {by_copy} |")  # fmt: skip


async def window_mode(up: Upstream, targets: list[Target], runs: int) -> None:
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    internal_samples: dict[str, list[float]] = {t.name: [] for t in targets}
    for target in targets:
        await asyncio.to_thread(target.start)
    for i in range(runs):
        order = targets if i % 2 == 0 else targets[::-1]
        for target in order:
            up.watch_db, up.windows, up.internal_windows = target.db, [], []
            outcome = await asyncio.to_thread(send, target.port, message(i, target.name), rcpts(i))
            assert outcome == "ok", outcome
            for _ in range(500):  # the last copy's timing may still be running (bounded: 5 s)
                if len(up.windows) == COPIES:
                    break
                await asyncio.sleep(0.01)
            up.watch_db = None
            samples[target.name].extend(up.windows)
            internal_samples[target.name].extend(up.internal_windows)
    print("\n250 written → ledger rows visible in the file, per copy (ms)")
    print("| tree | copies | median | p90 | max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, values in samples.items():
        ms = sorted(v * 1000 for v in values)
        p90 = ms[int(0.9 * (len(ms) - 1))]
        print(f"| {name} | {len(ms)} | {statistics.median(ms):.2f} | {p90:.2f} | {ms[-1]:.2f} |")
    print("\nthe internal copy alone (2 recipients): " + ", ".join(
        f"{name} median {statistics.median(v * 1000 for v in k):.2f} ms"
        for name, k in internal_samples.items()
    ))  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["kill", "window"], default="kill")
    parser.add_argument("--runs", type=int, default=50, help="per tree (bounded: at most 1000)")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--quit-delay-ms", type=float, default=0.0, help="upstream's QUIT reply")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    args = parser.parse_args()
    runs = min(max(args.runs, 1), 1000)
    up = Upstream(quit_delay=args.quit_delay_ms / 1000)
    server, up_port = await start_upstream(up)
    scratch = Path(tempfile.mkdtemp(prefix="ccguard-split-kill-"))
    targets = []
    for spec in args.tree or [f"here={ROOT}"]:
        name, _, path = spec.partition("=")
        (scratch / name).mkdir()
        targets.append(Target(name, Path(path).resolve(), scratch / name, up_port, args.pool_size))
    print(f"scratch {scratch}; {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}", flush=True)
    try:
        if args.mode == "kill":
            await kill_mode(up, targets, runs, args.delay_ms / 1000)
        else:
            await window_mode(up, targets, runs)
    finally:
        for target in targets:
            await asyncio.to_thread(target.stop)
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
