"""Small messages are inspected on the event loop, big header blocks in a worker
thread: a 5,000-address header never stalls the other sessions."""

from __future__ import annotations

import asyncio
import smtplib
import time

from relay.envelope import Envelope
from relay.inspect import parse_message
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream

SMALL = b"From: <alice@example.org>\r\nTo: <bob@example.com>\r\nSubject: hi\r\n\r\nHello\r\n"


def wide(addresses: int) -> bytes:
    to = ",\r\n ".join(f"Guest {n} <g{n}@d{n % 300}.example.com>" for n in range(addresses))
    return f"From: <alice@example.org>\r\nTo: {to}\r\nSubject: all\r\n\r\nHi\r\n".encode()


def send(port: int, message: bytes, count: int = 1) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        for _ in range(count):
            client.sendmail("alice@example.org", ["bob@example.com"], message)


async def test_a_5000_address_header_does_not_stall_other_sessions(
    upstream: RecordingUpstream,
) -> None:
    big = wide(5000)
    async with running_relay(settings_for(upstream.port)) as relay:
        decider = relay.front.decider
        env = Envelope(
            mail_from="alice@example.org", rcpt_tos=("bob@example.com",), mail_options=(),
            client_ip="127.0.0.1", client_helo="t", queue_id="Q", rcpt_options=(),
        )  # fmt: skip
        parsed = parse_message(big)
        started = time.perf_counter()
        decider.decide_now(env, parsed)  # type: ignore[attr-defined]
        inline_seconds = time.perf_counter() - started

        worst_gap = 0.0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal worst_gap
            while not done.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                worst_gap = max(worst_gap, time.perf_counter() - before)

        tick = asyncio.create_task(ticker())
        small = asyncio.create_task(asyncio.to_thread(send, relay.smtp_port, SMALL, 20))
        await asyncio.to_thread(send, relay.smtp_port, big)
        done.set()
        await tick
        await small
    assert len(upstream.messages) == 21
    # Inspected on the loop, the loop would stand still for the whole inspection; in
    # a thread it keeps turning (the GIL is handed over every few milliseconds).
    assert worst_gap < inline_seconds / 2, (worst_gap, inline_seconds)
