#!/usr/bin/env python3
"""Probe latency under a steady background load (raw SMTP over asyncio streams).

``--rate`` messages/second are sent over ``--connections`` kept-open sessions, paced
by one schedule; meanwhile one probe session sends a message every ``--probe-every``
seconds and times it from MAIL FROM to the reply to the end of DATA.  Prints one JSON
line: the probe latencies' p50/p99 in ms and the background rate achieved.  Bounded by
``--duration``.

Usage: python bench/probe.py PORT [--rate 200] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

BODY = (
    b"Subject: probe\r\nFrom: <alice@example.org>\r\nTo: <bob@example.com>\r\n\r\n"
    + (b"x" * 76 + b"\r\n") * 50
)


async def _reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server hung up")
        if line[3:4] != b"-":
            return line


class Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Session:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        session = cls(reader, writer)
        await _reply(reader)
        await session.command(b"EHLO probe.bench\r\n")
        return session

    async def command(self, line: bytes) -> bytes:
        self.writer.write(line)
        reply = await _reply(self.reader)
        if not reply.startswith((b"2", b"3")):
            raise RuntimeError(f"unexpected reply {reply!r} to {line[:20]!r}")
        return reply

    async def send(self) -> float:
        started = time.perf_counter()
        await self.command(b"MAIL FROM:<alice@example.org>\r\n")
        await self.command(b"RCPT TO:<bob@example.com>\r\n")
        await self.command(b"DATA\r\n")
        await self.command(BODY + b".\r\n")
        return time.perf_counter() - started

    async def close(self) -> None:
        self.writer.write(b"QUIT\r\n")
        self.writer.close()


async def background(port: int, rate: float, connections: int, until: float) -> int:
    queue: asyncio.Queue[None] = asyncio.Queue(maxsize=connections * 2)
    sent = 0

    async def worker() -> None:
        nonlocal sent
        session = await Session.open(port)
        while time.monotonic() < until:
            try:
                await asyncio.wait_for(queue.get(), timeout=max(0.01, until - time.monotonic()))
            except TimeoutError:
                break
            await session.send()
            sent += 1
        await session.close()

    async def pace() -> None:
        start = time.monotonic()
        n = 0
        while time.monotonic() < until:
            n += 1
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            if not queue.full():  # a saturated server just gets less load
                queue.put_nowait(None)

    await asyncio.gather(pace(), *(worker() for _ in range(connections)))
    return sent


async def probes(port: int, every: float, until: float, warmup: float) -> list[float]:
    session = await Session.open(port)
    times = []
    while time.monotonic() < until:
        seconds = await session.send()
        if time.monotonic() > warmup:
            times.append(seconds)
        await asyncio.sleep(every)
    await session.close()
    return times


async def main(args: argparse.Namespace) -> dict[str, float]:
    now = time.monotonic()
    until = now + args.duration
    sent, times = await asyncio.gather(
        background(args.port, args.rate, args.connections, until),
        probes(args.port, args.probe_every, until, now + 1.0),
    )
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return {
        "probes": len(times),
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": p99 * 1000,
        "background_rate": sent / args.duration,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--probe-every", type=float, default=0.02)
    print(json.dumps(asyncio.run(main(parser.parse_args()))), flush=True)
    sys.exit(0)
