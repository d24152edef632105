"""[limits] max_inflight_bytes covers the milter's connections too: a real milter
client (the MTA's side of the protocol, frame by frame) over loopback."""

from __future__ import annotations

import asyncio
import struct

from relay.app import Relay
from tests.helpers.observability import parse_metrics
from tests.helpers.process import free_port
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream
from tests.integration.test_milter_protocol import frame, negotiate

BODY = b"x" * 98 + b"\r\n"


def inflight(relay: Relay) -> float:
    return parse_metrics(relay.metrics.render()[0]).value("ccguard_inflight_bytes")


class Mta:
    """One milter connection as Postfix's smtpd drives it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> Mta:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        mta = cls(reader, writer)
        mta.writer.write(negotiate())
        assert (await mta.answer())[0:1] == b"O"
        return mta

    async def answer(self) -> bytes:
        size = struct.unpack("!L", await asyncio.wait_for(self.reader.readexactly(4), 10))[0]
        return await asyncio.wait_for(self.reader.readexactly(size), 10)

    async def until_body(self, body_bytes: int, *, first: bool = True) -> None:
        """(Connect, HELO,) MAIL, RCPT, DATA, headers and ``body_bytes`` of body (no end)."""
        w = self.writer
        if first:
            address = b"4" + struct.pack("!H", 2525) + b"127.0.0.1\0"
            w.write(frame(b"C", b"client.example.org\0" + address))
            w.write(frame(b"H", b"client.example.org\0"))
        w.write(frame(b"M", b"<alice@example.org>\0"))
        w.write(frame(b"R", b"<bob@example.com>\0"))
        w.write(frame(b"T"))
        assert (await self.answer()) == b"c"  # DATA is answered
        w.write(frame(b"L", b"From\0 alice@example.org\0") + frame(b"L", b"To\0 bob@example.com\0"))
        w.write(frame(b"L", b"Subject\0 budget\0") + frame(b"N"))
        for _ in range(body_bytes // len(BODY)):
            w.write(frame(b"B", BODY))
        await w.drain()

    async def end(self) -> bytes:
        """End of message; the final answer (header edits before it skipped)."""
        self.writer.write(frame(b"E"))
        while (reply := await self.answer())[0:1] in (b"h", b"i", b"m", b"p"):
            pass
        return reply

    def close(self) -> None:
        self.writer.close()


async def _until(condition: object, what: str) -> None:
    for _ in range(200):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def test_milter_messages_count_in_max_inflight_bytes(upstream: RecordingUpstream) -> None:
    port = free_port()
    settings = settings_for(
        upstream.port,
        smtp={"listen": "", "max_message_size": 10_000},
        limits={"max_inflight_bytes": 15_000},
        milter={"listen": f"inet:127.0.0.1:{port}"},
    )
    async with running_relay(settings) as relay:
        first = await Mta.connect(port)
        await first.until_body(9_000)
        await _until(lambda: inflight(relay) >= 9_000, "the first message's bytes in flight")
        second = await Mta.connect(port)
        await second.until_body(9_000)
        refused = await second.end()
        first.writer.write(frame(b"A"))  # the first one is abandoned: its bytes are free
        await _until(lambda: inflight(relay) == 0, "the first message's bytes given back")
        await second.until_body(9_000, first=False)  # the retry, on the same connection
        retried = await second.end()
        first.close()
        second.close()
        cut = await Mta.connect(port)  # an MTA gone mid-message gives its bytes back too
        await cut.until_body(9_000)
        await _until(lambda: inflight(relay) >= 9_000, "the cut message's bytes in flight")
        cut.close()
        await _until(lambda: inflight(relay) == 0, "the cut message's bytes given back")
        scrape = parse_metrics(relay.metrics.render()[0])
    assert refused == b"y452 4.3.1 Insufficient system storage, try again later\0"
    assert retried == b"c"
    assert scrape.value("ccguard_inflight_refusals_total", stage="data") == 1
