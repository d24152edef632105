#!/usr/bin/env python3
"""Slow and idle clients must not delay other clients' mail.

A real ``ccguard serve`` process relays to Postfix's ``smtp-sink`` on loopback.  A
"probe" client sends messages with smtplib, a new connection each, and the time of
each whole send (connect, greeting, EHLO, MAIL, RCPT, DATA, QUIT; ``--gap`` seconds
apart, an application's pace) is recorded in two
interleaved phases, round after round:

* quiet: nothing else is connected (the reference);
* noisy: ``--idle`` connections that were greeted and then say nothing, plus
  ``--slow`` clients that each send one byte per second (a command, then a message,
  dribbled), all open for the whole phase.

Printed: the median and 95th percentile per phase and the noisy/quiet ratio of the
medians, round by round (pairs taken in the same run, so machine drift cancels).
Counts and time are bounded; every connection and process is closed at the end.

Usage: python bench/bench_front_door.py [--rounds 5] [--messages 100] [--idle 300] [--slow 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_relay import RCPT, SBIN, SENDER, Sink, ccguard, stop

MESSAGE = (
    f"From: {SENDER}\r\nTo: {RCPT}\r\nSubject: probe\r\n\r\n" + "body line\r\n" * 40
).encode()
DRIBBLE = (
    b"EHLO slow.example.org\r\nMAIL FROM:<slow@example.org>\r\nRCPT TO:<bob@example.com>\r\n"
    b"DATA\r\n" + MESSAGE + b".\r\n"
)
# The probe and the idle clients come from 127.0.0.1, far above the default 50 per IP.
LIMITS = "[limits]\nmax_connections = 5000\nmax_connections_per_ip = 5000\n"


class Noise:
    """Idle and slow connections, run by an event loop in a thread of their own."""

    def __init__(self, port: int, idle: int, slow: int) -> None:
        self.port, self.idle, self.slow = port, idle, slow
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stopping: asyncio.Event | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by stop()
            self.error = exc
            self.ready.set()
        finally:
            self.loop.close()

    async def _main(self) -> None:
        self.stopping = asyncio.Event()
        conns = await asyncio.gather(*(self._greeted() for _ in range(self.idle + self.slow)))
        tasks = [asyncio.create_task(self._dribble(w)) for _, w in conns[self.idle :]]
        self.ready.set()
        await self.stopping.wait()
        for task in tasks:
            task.cancel()
        for _, writer in conns:
            writer.close()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _greeted(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        line = await asyncio.wait_for(reader.readline(), 30)
        if not line.startswith(b"220 "):
            raise RuntimeError(f"noise connection not greeted: {line!r}")
        return reader, writer

    async def _dribble(self, writer: asyncio.StreamWriter) -> None:
        for byte in DRIBBLE:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1.0)  # the slowness being benchmarked

    @contextmanager
    def running(self) -> Iterator[None]:
        self.thread.start()
        if not self.ready.wait(60) or self.error is not None:
            raise SystemExit(f"bench: noise did not start: {self.error!r}")
        try:
            yield
        finally:
            if self.stopping is not None:
                self.loop.call_soon_threadsafe(self.stopping.set)
            self.thread.join(30)


def probe(port: int, messages: int, gap: float = 0.0) -> list[float]:
    times = []
    for n in range(messages):
        if n and gap:
            time.sleep(
                gap
            )  # an application's pace, so the phase lasts while the slow clients dribble
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            if client.sendmail(SENDER, [RCPT], MESSAGE):
                raise SystemExit("bench: probe recipient refused")
        times.append(time.perf_counter() - started)
    return times


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=100, help="probe messages per phase")
    parser.add_argument("--idle", type=int, default=300, help="idle connections when noisy")
    parser.add_argument("--slow", type=int, default=10, help="1 byte/s clients when noisy")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between probe messages")
    args = parser.parse_args()
    if not (SBIN / "smtp-sink").exists():
        raise SystemExit(f"bench: {SBIN / 'smtp-sink'} missing: install the Debian package postfix")
    print(
        f"# front door under idle/slow clients, {os.cpu_count()} CPUs,"
        f" Python {sys.version.split()[0]}"
    )
    print(
        f"# {args.messages} probe messages per phase, {args.gap} s apart,"
        f" noisy = {args.idle} idle + {args.slow} slow"
    )
    ratios = []
    sent = 0
    with tempfile.TemporaryDirectory(prefix="ccguard-bench-") as tmp:
        sink = Sink(Path(tmp))
        try:
            with ccguard(Path(tmp), sink.port, LIMITS) as port:
                probe(port, 10)  # warm-up
                sent += 10
                for n in range(args.rounds):
                    quiet = probe(port, args.messages, args.gap)
                    with Noise(port, args.idle, args.slow).running():
                        noisy = probe(port, args.messages, args.gap)
                    sent += 2 * args.messages
                    q, z = statistics.median(quiet), statistics.median(noisy)
                    ratios.append(z / q)
                    print(
                        f"round {n + 1}: quiet median {q * 1000:6.2f} ms"
                        f" p95 {p95(quiet) * 1000:6.2f} ms | noisy median"
                        f" {z * 1000:6.2f} ms p95 {p95(noisy) * 1000:6.2f} ms"
                        f" | ratio {z / q:.2f}",
                        flush=True,
                    )
                sink.wait_for(sent)
        finally:
            stop(sink.proc)
    print(f"median ratio noisy/quiet over {args.rounds} rounds: {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
