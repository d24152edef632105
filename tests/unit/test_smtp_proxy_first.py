"""Reading a PROXY header from a raw socket before TLS (relay/smtp/proxy_first.py), over a
real socket pair: exactly the header's bytes, never the ClientHello that follows it."""

from __future__ import annotations

import asyncio
import socket

import pytest

from relay.smtp.proxy import ProxyGate
from relay.smtp.proxy_first import parse_header, read_header
from tests.helpers.proxy_tls import v1, v2

HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32  # a ClientHello's start
LOCAL = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"


async def read_from(writes: list[bytes]) -> tuple[bytes, bytes]:
    """What read_header took when the peer wrote ``writes``, and what it left unread."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        reading = asyncio.create_task(read_header(ours))
        for piece in writes:
            theirs.sendall(piece)
            await asyncio.sleep(0)  # let the reader take this piece on its own
        header = await asyncio.wait_for(reading, 10)
        theirs.close()
        ours.setblocking(True)
        rest = b""
        while chunk := ours.recv(4096):
            rest += chunk
    return header, rest


HEADERS = [v1("192.0.2.7"), v2("192.0.2.7"), LOCAL, b"PROXY UNKNOWN\r\n"]


@pytest.mark.parametrize("header", HEADERS, ids=["v1", "v2", "local", "unknown"])
async def test_exactly_the_header_is_read_however_it_is_cut(header: bytes) -> None:
    whole = await read_from([header + HELLO])
    cut = await read_from([header[:2], header[2:13], header[13:] + HELLO])
    assert whole == cut == (header, HELLO)


async def test_a_parsed_header_names_the_client() -> None:
    data = await parse_header((await read_from([v2("192.0.2.7") + HELLO]))[0])
    assert data.valid and ProxyGate.client_ip(data, "127.0.0.1") == "192.0.2.7"
    local = await parse_header(LOCAL)
    assert local.valid and ProxyGate.speaks_for_itself(local)


async def test_not_a_header_comes_back_as_its_first_bytes_and_parses_invalid() -> None:
    assert await read_from([HELLO]) == (HELLO[:5], HELLO[5:])
    assert not (await parse_header(HELLO[:5])).valid
    too_long = b"PROXY " + b"1" * 200 + b"\r\n"
    header, _ = await read_from([too_long])
    assert len(header) == 107 and not (await parse_header(header)).valid


async def test_peer_leaving_inside_the_header_is_an_end_of_file() -> None:
    for half in (b"PRO", b"PROXY TCP4 192.0.2.7", v2("192.0.2.7")[:20]):
        ours, theirs = socket.socketpair()
        with ours, theirs:
            ours.setblocking(False)
            theirs.sendall(half)
            theirs.shutdown(socket.SHUT_WR)
            with pytest.raises(EOFError):
                await asyncio.wait_for(read_header(ours), 10)
