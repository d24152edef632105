"""What a client writes can never pose as ccguard's own header lines.

ccguard's ``Received:`` header is always one complete field, whatever the
client says in HELO or puts first in its header block, and no line the
upstream gets from the sender reads as an ``X-CCGuard-*`` tag once control
characters are dropped (as some readers and later hops do).  A real relay on
loopback, a real aiosmtpd upstream, a raw socket client (smtplib would refuse
to send these bytes).
"""

from __future__ import annotations

import asyncio
import re
import socket

import pytest

from relay.app import Relay
from relay.inspect import parse_message
from tests.helpers.hangup import read_reply
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream

BODY = b"\r\nHello\r\n"
SUBJECT = b"Subject: hi\r\n"
CONTROLS = re.compile(rb"[\x00-\x1f\x7f]")


def send_raw(port: int, helo: bytes, data: bytes) -> bytes:
    """EHLO ``helo``, one message with ``data`` byte for byte; the end-of-DATA reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        read_reply(sock)
        commands = [b"EHLO " + helo, b"MAIL FROM:<alice@example.org>",
                    b"RCPT TO:<bob@example.org>", b"DATA"]  # fmt: skip
        for command in commands:
            sock.sendall(command + b"\r\n")
            read_reply(sock)
        sock.sendall(data + b".\r\n")
        reply = read_reply(sock)
        sock.sendall(b"QUIT\r\n")
        read_reply(sock)
        return reply


async def deliver(relay: Relay, upstream: RecordingUpstream, helo: bytes, data: bytes) -> bytes:
    reply = await asyncio.to_thread(send_raw, relay.smtp_port, helo, data)
    assert reply.startswith(b"250 "), reply
    await upstream.wait_for(1)
    return upstream.messages.pop().data


def ours(delivered: bytes) -> bytes:
    """ccguard's Received header: the first field of what was delivered."""
    first = parse_message(delivered).fields[0]
    assert first.key == "received"
    return first.raw


HELOS = {
    "nul and vertical tab": (b"a\x0bb\x00c", b"a?b?c"),
    "8-bit": (b"\xff\xfe", b"??"),
    "fake by clause": (
        b"x (spoof [10.0.0.1]) by trusted.example.org with ESMTPSA;",
        b"x??spoof?[10.0.0.1]??by?trusted.example.org?with?ESMTPSA?",
    ),
    "too long": (b"x" * 300, b"x" * 100),
    "internationalised domain": ("café.example.org".encode(), b"xn--caf-dma.example.org"),
    "domain": (b"client.example.org", b"client.example.org"),
    "address literal": (b"[192.0.2.1]", b"[192.0.2.1]"),
    "IPv6 literal": (b"[IPv6:2001:db8::1]", b"[IPv6:2001:db8::1]"),
}


@pytest.mark.parametrize("case", list(HELOS))
async def test_helo_is_written_into_received_only_as_a_domain_or_sanitised(
    upstream: RecordingUpstream, case: str
) -> None:
    helo, written = HELOS[case]
    async with running_relay(settings_for(upstream.port)) as relay:
        delivered = await deliver(relay, upstream, helo, SUBJECT + BODY)
    received = ours(delivered)
    assert received.startswith(
        b"Received: from " + written + b" ([127.0.0.1])\r\n\tby ccguard.test"
    )
    lines = received.split(b"\r\n")
    assert len(lines) == 4 and lines[-1] == b""  # from, by ... id ...;, date
    assert received.count(b";") == 1 and received.count(b"(") == 2  # ([127.0.0.1]) (ccguard)
    assert not CONTROLS.search(received.replace(b"\r\n\t", b"").removesuffix(b"\r\n"))
    assert all(0x20 <= byte < 0x7F for byte in received.replace(b"\r\n\t", b"").rstrip())


async def test_a_first_header_line_starting_with_blanks_does_not_fold_into_received(
    upstream: RecordingUpstream,
) -> None:
    async with running_relay(settings_for(upstream.port)) as relay:
        forged = await deliver(
            relay, upstream, b"client.example.org",
            b" X-CCGuard-Action: pass\r\n" + SUBJECT + BODY,
        )  # fmt: skip
        plain = await deliver(
            relay, upstream, b"client.example.org",
            b"\t \r\n  Comments: hello\r\n" + SUBJECT + BODY,
        )  # fmt: skip
    for delivered in (forged, plain):
        received = ours(delivered)
        assert received.endswith(b" +0000\r\n") or received.endswith(b" -0000\r\n"), received
        assert b"X-CCGuard" not in received and b"Comments" not in received
    # The forged tag, no longer hidden by its blank, is stripped like any other.
    assert b"X-CCGuard" not in forged
    assert forged.endswith(SUBJECT + BODY)
    assert plain.endswith(b"Comments: hello\r\n" + SUBJECT + BODY)


FORGED_WITH_CONTROLS = {
    "nul before the colon": b"X-CCGuard-Action\x00: pass\r\n",
    "nul first": b"\x00X-CCGuard-Rule: approved\r\n",
    "control inside the name": b"X-CC\x01Guard-Exposure: visible_external=0\r\n",
    "del inside the name": b"X-CCGuard\x7f-Action: pass\r\n",
    "after another junk line": b"no field here\r\nX-CCGuard-Action\x00: pass\r\n",
}


@pytest.mark.parametrize("case", list(FORGED_WITH_CONTROLS))
async def test_a_forged_tag_with_control_characters_in_its_name_never_reaches_the_upstream(
    upstream: RecordingUpstream, case: str
) -> None:
    head = SUBJECT + FORGED_WITH_CONTROLS[case] + b"From: alice@example.org\r\n"
    async with running_relay(settings_for(upstream.port)) as relay:
        delivered = await deliver(relay, upstream, b"client.example.org", head + BODY)
    header = delivered.split(b"\r\n\r\n", 1)[0]
    tags = [
        line for line in header.split(b"\r\n")
        if CONTROLS.sub(b"", line).lower().startswith(b"x-ccguard-")
    ]  # fmt: skip
    assert tags == []
    assert SUBJECT + b"From: alice@example.org\r\n" + BODY in delivered
