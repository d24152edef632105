"""[limits] max_inflight_bytes: real SMTP clients against a real relay on loopback."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import struct
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiosmtpd.smtp import SMTP

from relay.app import Relay
from tests.helpers.observability import parse_metrics
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream

BUDGET = 10_000
HEAD = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: budget\r\n\r\n"
FULL = (452, b"4.3.1 Insufficient system storage, try again later")


def body(size: int) -> bytes:
    """A message of exactly ``size`` bytes (as smtplib sends it, before the final dot)."""
    lines = b"x" * 98 + b"\r\n"
    filler = lines * ((size - len(HEAD)) // len(lines))
    rest = size - len(HEAD) - len(filler)
    return HEAD + filler + (b"y" * (rest - 2) + b"\r\n" if rest else b"")


def metrics(relay: Relay) -> dict[str, float]:
    url = f"http://127.0.0.1:{relay.http_port('admin')}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        scrape = parse_metrics(resp.read())
    return {
        "inflight": scrape.value("ccguard_inflight_bytes"),
        "limit": scrape.value("ccguard_inflight_limit_bytes"),
        "refused_mail": scrape.value("ccguard_inflight_refusals_total", stage="mail"),
        "refused_data": scrape.value("ccguard_inflight_refusals_total", stage="data"),
    }


async def wait_until(relay: Relay, check: Callable[[dict[str, float]], bool]) -> dict[str, float]:
    """Scrape /metrics until ``check`` holds (the relay works in this loop: yield to it)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        seen = await asyncio.to_thread(metrics, relay)
        if check(seen):
            return seen
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"metrics never satisfied the check: {seen}")
        await asyncio.sleep(0.01)


class Client:
    """One smtplib session driven step by step from the test's loop."""

    def __init__(self, smtp: smtplib.SMTP) -> None:
        self.smtp = smtp

    @classmethod
    async def open(cls, port: int) -> Client:
        smtp = await asyncio.to_thread(smtplib.SMTP, "127.0.0.1", port, timeout=30)
        await asyncio.to_thread(smtp.ehlo, "client.example.org")
        return cls(smtp)

    async def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.smtp, name), *args, **kwargs)

    async def begin(self, size: int | None = None) -> tuple[int, bytes]:
        options = [f"SIZE={size}"] if size is not None else []
        reply: tuple[int, bytes] = await self.call("mail", "alice@example.org", options)
        if reply[0] == 250:
            await self.call("rcpt", "bob@example.com")
        return reply

    async def start_data(self, first: bytes) -> None:
        await self.call("putcmd", "data")
        assert (await self.call("getreply"))[0] == 354
        await self.call("send", first)

    async def end_data(self, rest: bytes) -> tuple[int, bytes]:
        await self.call("send", rest + b".\r\n")
        reply: tuple[int, bytes] = await self.call("getreply")
        return reply

    async def send_message(self, data: bytes) -> tuple[int, bytes]:
        """DATA with ``data`` (smtplib dot-stuffs and terminates it); the reply."""
        reply: tuple[int, bytes] = await self.call("data", data)
        return reply

    async def reset(self) -> None:
        """Drop the connection with a TCP reset, no QUIT."""
        sock = self.smtp.sock
        assert sock is not None
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.call("close")  # the reply file too, or the socket stays open

    async def close(self) -> None:
        await self.call("close")


@asynccontextmanager
async def budget_relay(upstream: RecordingUpstream) -> AsyncIterator[Relay]:
    settings = settings_for(
        upstream.port,
        smtp={"max_message_size": BUDGET},
        limits={"max_inflight_bytes": BUDGET},
    )
    async with running_relay(settings, LogCapture()) as relay:
        yield relay


async def test_size_over_the_remaining_budget_is_refused_at_mail(
    upstream: RecordingUpstream,
) -> None:
    async with budget_relay(upstream) as relay:
        holder = await Client.open(relay.smtp_port)
        late = await Client.open(relay.smtp_port)
        assert (await holder.begin(size=8000))[0] == 250
        held = await wait_until(relay, lambda m: m["inflight"] == 8000)
        assert await late.begin(size=2001) == FULL
        assert (await late.begin(size=2000))[0] == 250  # what is left still fits
        seen = await wait_until(relay, lambda m: m["inflight"] == 10_000)
        await holder.close()
        await late.close()
        after = await wait_until(relay, lambda m: m["inflight"] == 0)
    assert held["limit"] == BUDGET
    assert seen["refused_mail"] == 1 and seen["refused_data"] == 0
    assert after["refused_mail"] == 1
    assert upstream.messages == []


async def test_without_size_a_large_data_is_refused_at_its_end_while_a_small_one_passes(
    upstream: RecordingUpstream,
) -> None:
    async with budget_relay(upstream) as relay:
        first = await Client.open(relay.smtp_port)
        large = await Client.open(relay.smtp_port)
        small = await Client.open(relay.smtp_port)
        big_message = body(7000)
        await first.begin()
        await first.start_data(big_message[:6000])
        await wait_until(relay, lambda m: m["inflight"] >= 5000)
        await large.begin()
        refused = await large.send_message(body(5000))
        during = await wait_until(relay, lambda m: m["refused_data"] == 1)
        await small.begin()
        passed = await small.send_message(body(1000))
        done = await first.end_data(big_message[6000:])
        for client in (first, large, small):
            await client.close()
        after = await wait_until(relay, lambda m: m["inflight"] == 0)
    assert refused == FULL
    assert passed[0] == 250 and done[0] == 250
    assert during["inflight"] >= 5000  # the refused one gave its bytes back at once
    assert after["refused_data"] == 1 and after["refused_mail"] == 0
    delivered = [m.data for m in upstream.messages]
    assert len(delivered) == 2
    assert any(d.endswith(big_message) for d in delivered)
    assert any(d.endswith(body(1000)) for d in delivered)


async def test_the_connection_is_usable_after_a_452_at_end_of_data(
    upstream: RecordingUpstream,
) -> None:
    async with budget_relay(upstream) as relay:
        holder = await Client.open(relay.smtp_port)
        other = await Client.open(relay.smtp_port)
        assert (await holder.begin(size=9000))[0] == 250
        await other.begin()
        assert await other.send_message(body(3000)) == FULL
        await holder.call("rset")
        await wait_until(relay, lambda m: m["inflight"] == 0)
        await other.begin()
        reply = await other.send_message(body(9500))
        await holder.close()
        await other.close()
    assert reply[0] == 250
    assert [m.data[-9500:] for m in upstream.messages] == [body(9500)]


async def test_the_reservation_is_released_on_every_way_out(upstream: RecordingUpstream) -> None:
    async with budget_relay(upstream) as relay:
        client = await Client.open(relay.smtp_port)
        for way_out in ("RSET", "message", "QUIT", "reset", "reset mid-DATA", "452 at DATA"):
            size = BUDGET if way_out != "452 at DATA" else None
            assert (await client.begin(size=size))[0] == 250, way_out
            if way_out == "RSET":
                await client.call("rset")
            elif way_out == "message":
                assert (await client.send_message(body(500)))[0] == 250
            elif way_out == "QUIT":
                await client.call("quit")
            elif way_out == "reset":
                await client.reset()
            elif way_out == "reset mid-DATA":
                await client.start_data(body(4000))
                await wait_until(relay, lambda m: m["inflight"] >= 4000)
                await client.reset()
            else:  # over the budget while receiving (no SIZE=): 452, and nothing held
                holder = await Client.open(relay.smtp_port)
                assert (await holder.begin(size=6000))[0] == 250
                assert await client.send_message(body(5000)) == FULL
                await holder.close()
            await wait_until(relay, lambda m: m["inflight"] == 0)
            if way_out in ("QUIT", "reset", "reset mid-DATA"):
                client = await Client.open(relay.smtp_port)
        # A whole-budget transaction still fits after all that.
        assert (await client.begin(size=BUDGET))[0] == 250
        assert (await client.send_message(body(BUDGET)))[0] == 250
        await client.close()
        final = await wait_until(relay, lambda m: m["inflight"] == 0)
    assert final["refused_mail"] == 0 and final["refused_data"] == 1
    assert len(upstream.messages) == 2


class GatedUpstream:
    """aiosmtpd handler that answers DATA only once ``gate`` is set."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()
        self.gate = asyncio.Event()
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.arrived.set()
        await self.gate.wait()
        self.messages.append(envelope.original_content)
        return "250 2.0.0 Ok"


async def test_a_message_that_outlives_its_client_holds_its_bytes_until_finished() -> None:
    handler = GatedUpstream()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="upstream.test", loop=loop), host="127.0.0.1", port=0
    )
    port = server.sockets[0].getsockname()[1]
    settings = settings_for(
        port, smtp={"max_message_size": BUDGET}, limits={"max_inflight_bytes": BUDGET}
    )
    try:
        async with running_relay(settings, LogCapture()) as relay:
            client = await Client.open(relay.smtp_port)
            await client.begin()
            message = body(6000)
            await client.start_data(message)
            await client.call("send", b".\r\n")
            await asyncio.wait_for(handler.arrived.wait(), 10)
            await client.reset()  # the client gives up; the delivery goes on
            during = await wait_until(relay, lambda m: m["inflight"] >= 5000)
            handler.gate.set()
            after = await wait_until(relay, lambda m: m["inflight"] == 0)
    finally:
        handler.gate.set()
        server.close()
        await server.wait_closed()
    assert during["inflight"] >= 6000 and after["inflight"] == 0
    assert len(handler.messages) == 1 and handler.messages[0].endswith(message)


class DropsAtSecondRcpt:
    """aiosmtpd handler: accepts the first RCPT, hangs up on the second."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if envelope.rcpt_tos:
            server.transport.close()
            return "421 4.3.0 gone"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"


async def test_data_after_the_upstream_dropped_gets_the_upstream_reply_not_452() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(DropsAtSecondRcpt(), hostname="upstream.test", loop=loop),
        host="127.0.0.1",
        port=0,
    )
    settings = settings_for(
        server.sockets[0].getsockname()[1],
        smtp={"max_message_size": BUDGET},
        limits={"max_inflight_bytes": BUDGET},
    )
    try:
        async with running_relay(settings, LogCapture()) as relay:
            client = await Client.open(relay.smtp_port)
            assert (await client.call("mail", "alice@example.org"))[0] == 250
            assert (await client.call("rcpt", "bob@example.com"))[0] == 250
            second = await client.call("rcpt", "carol@example.com")
            reply = await client.send_message(body(2000))
            await client.close()
            after = await wait_until(relay, lambda m: m["inflight"] == 0)
    finally:
        server.close()
        await server.wait_closed()
    assert second[0] == 451
    assert reply == (451, b"4.4.1 Upstream server unavailable, try again later")
    assert after["refused_data"] == 0
