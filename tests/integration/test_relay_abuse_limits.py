"""[limits]: connection counts, message rate, early talkers, and a 500-connection burst.

Other loopback addresses (127.0.0.2, 127.0.0.3) play other clients: Linux
routes all of 127.0.0.0/8 to the loopback interface.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from relay.app import Relay
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream

MESSAGE = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
TOO_MANY = b"421 4.7.0 Too many connections, try again later\r\n"


def metric(relay: Relay, name: str, **labels: str) -> float:
    return relay.metrics.registry.get_sample_value(name, labels) or 0.0


@contextmanager
def greeted(port: int, source: str) -> Iterator[socket.socket]:
    """A raw connection from ``source`` that has read its whole 220 greeting."""
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as s:
        assert s.recv(4096).startswith(b"220 ")
        yield s


def refused_reply(port: int, source: str) -> tuple[bytes, bytes]:
    """What a connection from ``source`` is told, and what follows (b"" = closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as s:
        reply = s.recv(4096)
        return reply, s.recv(4096)


def send(port: int, source: str = "127.0.0.1") -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=(source, 0)) as client:
        return client.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)


async def test_per_ip_limit_refuses_the_extra_connection_and_serves_others(
    upstream: RecordingUpstream,
) -> None:
    settings = settings_for(upstream.port, limits={"max_connections_per_ip": 3})

    def talk(port: int) -> tuple[tuple[bytes, bytes], dict[str, tuple[int, bytes]], bytes]:
        with ExitStack() as held:
            first = held.enter_context(greeted(port, "127.0.0.2"))
            for _ in range(2):
                held.enter_context(greeted(port, "127.0.0.2"))
            over = refused_reply(port, "127.0.0.2")
            served = send(port, "127.0.0.1")  # another client, while 127.0.0.2 is at its limit
            first.sendall(b"QUIT\r\n")
            assert first.recv(4096).startswith(b"221")
            first.close()
            with greeted(port, "127.0.0.2") as again:  # the slot came back
                again.sendall(b"QUIT\r\n")
                return over, served, again.recv(4096)

    async with running_relay(settings) as relay:
        over, served, bye = await asyncio.to_thread(talk, relay.smtp_port)
        count = metric(
            relay, "ccguard_smtp_connections_refused_total", reason="max_connections_per_ip"
        )
    assert over == (TOO_MANY, b"")
    assert served == {} and len(upstream.messages) == 1
    assert bye.startswith(b"221")
    assert count == 1


async def test_total_limit_refuses_a_flood_at_once_then_serves_when_a_slot_frees(
    upstream: RecordingUpstream,
) -> None:
    settings = settings_for(upstream.port, limits={"max_connections": 3})

    def talk(
        port: int, open_slots: Callable[[], int]
    ) -> tuple[list[tuple[bytes, bytes]], float, dict[str, tuple[int, bytes]]]:
        with ExitStack() as held:
            sessions = [held.enter_context(greeted(port, "127.0.0.2")) for _ in range(3)]
            started = time.monotonic()
            flood = [refused_reply(port, "127.0.0.3") for _ in range(50)]
            flood_seconds = time.monotonic() - started
            sessions[0].close()
            deadline = time.monotonic() + 30
            while open_slots() >= 3 and time.monotonic() < deadline:
                time.sleep(0.01)  # until ccguard has seen the close (bounded)
            return flood, flood_seconds, send(port, "127.0.0.1")

    async with running_relay(settings) as relay:
        slots = relay.front.connections
        flood, flood_seconds, served = await asyncio.to_thread(
            talk, relay.smtp_port, lambda: slots.open
        )
        count = metric(relay, "ccguard_smtp_connections_refused_total", reason="max_connections")
    assert set(flood) == {(TOO_MANY, b"")}
    assert flood_seconds < 10  # every refusal is answered at once, nothing queues
    assert served == {} and len(upstream.messages) == 1
    assert count >= 50


async def test_message_rate_per_client_ip_with_exempt_network(upstream: RecordingUpstream) -> None:
    log = LogCapture()
    limits = {"messages_per_minute": 2, "rate_exempt_networks": ["127.0.0.3/32"]}
    settings = settings_for(upstream.port, limits=limits)

    def talk(port: int) -> tuple[list[tuple[int, bytes]], list[dict[str, tuple[int, bytes]]]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=("127.0.0.2", 0)) as c:
            c.ehlo("app.example.org")
            replies = []
            for _ in range(3):
                replies.append(c.mail("alice@example.org"))
                if replies[-1][0] == 250:
                    c.rcpt("bob@example.com")
                    c.data(MESSAGE)
        others = [send(port, "127.0.0.1")] + [send(port, "127.0.0.3") for _ in range(4)]
        return replies, others

    async with running_relay(settings, log) as relay:
        replies, others = await asyncio.to_thread(talk, relay.smtp_port)
        limited = metric(relay, "ccguard_smtp_rate_limited_messages_total")
    assert replies == [
        (250, b"2.1.0 Sender OK"),
        (250, b"2.1.0 Sender OK"),
        (451, b"4.7.1 Rate limit exceeded, try again later"),
    ]
    assert others == [{}] * 5
    assert len(upstream.messages) == 7
    assert limited == 1
    events = [e for e in log.events() if e.get("event") == "rate limited"]
    assert [e["client_ip"] for e in events] == ["127.0.0.2"]


async def test_early_talker_is_refused_and_a_patient_client_is_served(
    upstream: RecordingUpstream,
) -> None:
    settings = settings_for(upstream.port, limits={"pregreet_wait": 1.0})

    def talk(port: int) -> tuple[bytes, dict[str, tuple[int, bytes]]]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"EHLO spam.example.net\r\n")  # before any greeting
            got = b""
            try:
                while chunk := sock.recv(4096):
                    got += chunk
            except ConnectionResetError:
                pass  # closed with the rest of our EHLO unread: a reset after the reply
        return got, send(port)

    async with running_relay(settings) as relay:
        got, served = await asyncio.to_thread(talk, relay.smtp_port)
        count = metric(relay, "ccguard_smtp_connections_refused_total", reason="early_talker")
    assert got == (
        b"220-ccguard.test ESMTP ccguard\r\n"
        b"554 5.5.0 Protocol error: client sent data before the greeting\r\n"
    )
    assert served == {} and len(upstream.messages) == 1
    assert count == 1


async def _burst(port: int, count: int) -> list[tuple[bytes, float]]:
    async def one() -> tuple[bytes, float]:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            line = await reader.readline()
            return line, time.monotonic() - started
        finally:
            writer.close()
            await writer.wait_closed()

    return await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), 30)


async def test_burst_of_500_simultaneous_connections_is_greeted_at_once(
    upstream: RecordingUpstream,
) -> None:
    # With asyncio's default backlog (100) the kernel drops what overflows the
    # accept queue and the clients wait for TCP retransmissions (1 s, 3 s, 7 s...);
    # the run with backlog 100 did not finish within 30 s.  The bound below leaves
    # room for a loaded machine but not for a retransmission cycle.
    settings = settings_for(upstream.port, limits={"max_connections_per_ip": 1000})
    async with running_relay(settings) as relay:
        results = await asyncio.to_thread(asyncio.run, _burst(relay.smtp_port, 500))
        for _ in range(1000):  # every server side has seen its close (bounded)
            if len(relay.front.sessions) == 0:
                break
            await asyncio.sleep(0.01)
        left_open = len(relay.front.sessions)
    assert [line for line, _ in results] == [b"220 ccguard.test ESMTP ccguard\r\n"] * 500
    slowest = max(seconds for _, seconds in results)
    assert slowest < 3.0, f"slowest greeting took {slowest:.2f}s: the kernel dropped connects"
    assert left_open == 0
