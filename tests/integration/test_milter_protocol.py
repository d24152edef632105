"""The milter listener facing a peer that is not a well-behaved MTA: it closes the
connection (the MTA's milter_default_action then applies), counts why, and keeps
serving; a stale unix socket from a crash is replaced, anything else is not."""

from __future__ import annotations

import asyncio
import socket
import struct
from pathlib import Path

import pytest

from relay.app import Relay
from tests.helpers.observability import parse_metrics
from tests.helpers.process import free_port
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``; everything the milter answers until it closes (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = b""
    try:
        writer.write(data)
        await writer.drain()
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            answer += chunk
    except ConnectionResetError:
        pass  # closed with our bytes unread: what was answered before still counts
    writer.close()
    return answer


def frame(command: bytes, payload: bytes = b"") -> bytes:
    return struct.pack("!L", len(payload) + 1) + command + payload


def negotiate() -> bytes:
    return frame(b"O", struct.pack("!LLL", 6, 0x1FF, 0x1FFFFF))


def errors(relay: Relay, kind: str) -> float:
    return parse_metrics(relay.metrics.render()[0]).value("ccguard_milter_errors_total", kind=kind)


async def test_unknown_command_and_huge_frame_close_the_connection_and_are_counted(
    upstream: RecordingUpstream,
) -> None:
    port = free_port()
    settings = settings_for(
        upstream.port, smtp={"listen": ""}, milter={"listen": f"inet:127.0.0.1:{port}"}
    )
    async with running_relay(settings) as relay:
        unknown = await exchange(port, negotiate() + frame(b"Z", b"junk"))
        huge = await exchange(
            port, negotiate() + struct.pack("!L", 64 << 20) + b"L" + b"x" * 200_000
        )
        # Still serving: a proper negotiation gets its answer.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(negotiate())
        header = await asyncio.wait_for(reader.readexactly(5), 10)
        writer.close()
        protocol, too_large = errors(relay, "protocol"), errors(relay, "too_large")
    assert unknown[4:5] == b"O" and huge[4:5] == b"O"  # negotiated, then closed
    assert protocol == 1 and too_large == 1
    assert header[4:5] == b"O"


async def test_an_mta_without_leading_space_headers_is_refused(upstream: RecordingUpstream) -> None:
    port = free_port()
    settings = settings_for(
        upstream.port, smtp={"listen": ""}, milter={"listen": f"inet:127.0.0.1:{port}"}
    )
    async with running_relay(settings) as relay:
        answer = await exchange(port, frame(b"O", struct.pack("!LLL", 6, 0x1FF, 0x0FFFFF)))
        protocol = errors(relay, "protocol")
    assert answer == b"" and protocol == 1


async def test_stale_unix_socket_is_replaced_but_a_regular_file_is_not(
    upstream: RecordingUpstream, tmp_path: Path
) -> None:
    stale = tmp_path / "milter.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(stale))  # left behind, as after a crash
    settings = settings_for(upstream.port, smtp={"listen": ""}, milter={"listen": f"unix:{stale}"})
    async with running_relay(settings):
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(stale))
    assert not stale.exists()
    regular = tmp_path / "not-a-socket"
    regular.write_text("keep me")
    settings = settings_for(
        upstream.port, smtp={"listen": ""}, milter={"listen": f"unix:{regular}"}
    )
    relay = Relay(settings)
    try:
        with pytest.raises(OSError, match="is not a socket"):
            await relay.start()
    finally:
        await relay.stop()
    assert regular.read_text() == "keep me"


async def test_a_peer_outside_allowed_peers_is_closed_before_any_answer(
    upstream: RecordingUpstream,
) -> None:
    """A milter peer could make ccguard send split copies through [upstream]: only the
    MTA's own addresses may connect (here loopback is not among them)."""
    port = free_port()
    milter = {"listen": f"inet:127.0.0.1:{port}", "allowed_peers": ["192.0.2.0/24"]}
    settings = settings_for(upstream.port, smtp={"listen": ""}, milter=milter)
    async with running_relay(settings) as relay:
        answer = await exchange(port, negotiate())
        refused = errors(relay, "peer")
    assert answer == b"" and refused == 1
