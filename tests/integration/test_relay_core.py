"""The relay core end to end: real clients → ccguard → real recording upstream, on loopback."""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from relay.settings import Settings
from tests.helpers.process import free_port
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.workers import running_workers

StartRelay = Callable[[Settings], AbstractAsyncContextManager[Any]]


@pytest.fixture(params=[1, 2], ids=["workers=1", "workers=2"])
def start_relay(request: pytest.FixtureRequest, tmp_path: Path) -> StartRelay:
    """The relay in this process (one worker), or ``ccguard serve`` with two workers."""
    if request.param == 1:
        return running_relay
    return lambda settings: running_workers(settings, request.param, tmp_path)


MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@example.com>\r\n"
    b"Subject: quarterly figures\r\n"
    b"Message-ID: <core-1@example.org>\r\n"
    b"\r\n"
    b"Hello Bob,\r\n"
    b".leading dot survives\r\n"
    b"\r\n"
    b"-- \r\nAlice\r\n"
)
RECEIVED = re.compile(
    rb"^Received: from [^\r\n]+ \(\[127\.0\.0\.1\]\)\r\n"
    rb"\tby ccguard\.test \(ccguard\) with (ESMTP|UTF8SMTP) id [0-9A-Z]{12};\r\n"
    rb"\t[^\r\n]+\r\n"
)


def strip_received(data: bytes) -> bytes:
    """The delivered bytes without ccguard's one Received header (which must be there)."""
    match = RECEIVED.match(data)
    assert match, f"no ccguard Received header at the top: {data[:200]!r}"
    return data[match.end() :]


def smtplib_send(port: int, sender: str, rcpts: list[str], message: bytes) -> dict[str, object]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        return client.sendmail(sender, rcpts, message)


async def test_smtplib_message_arrives_byte_for_byte(
    upstream: RecordingUpstream, start_relay: StartRelay
) -> None:
    async with start_relay(settings_for(upstream.port)) as relay:
        refused = await asyncio.to_thread(
            smtplib_send, relay.smtp_port, "alice@example.org", ["bob@example.com"], MESSAGE
        )
    assert refused == {}
    (got,) = upstream.messages
    assert strip_received(got.data) == MESSAGE
    assert got.mail_from == "alice@example.org"
    assert got.rcpt_tos == ["bob@example.com"]


async def test_aiosmtplib_client_envelope_and_bytes(
    upstream: RecordingUpstream, start_relay: StartRelay
) -> None:
    rcpts = ["bob@example.com", "carol@example.net", "dave@example.org"]
    async with start_relay(settings_for(upstream.port)) as relay:
        errors, text = await aiosmtplib.send(
            MESSAGE,
            sender="alice@example.org",
            recipients=rcpts,
            hostname="127.0.0.1",
            port=relay.smtp_port,
            start_tls=False,
        )
    assert errors == {}
    assert text.startswith("2.0.0")
    (got,) = upstream.messages
    assert got.rcpt_tos == rcpts
    assert strip_received(got.data) == MESSAGE


async def test_null_sender_is_carried_through(
    upstream: RecordingUpstream, start_relay: StartRelay
) -> None:
    async with (
        start_relay(settings_for(upstream.port)) as relay,
        aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.smtp_port, start_tls=False) as client,
    ):
        await client.sendmail("", ["bob@example.com"], MESSAGE)
    (got,) = upstream.messages
    assert got.mail_from == "<>"


async def test_smtputf8_address_and_8bit_body(
    upstream: RecordingUpstream, start_relay: StartRelay
) -> None:
    body = "Grüße aus Köln — 日本語\r\n".encode()
    message = (
        "From: Jörg <jörg@example.org>\r\nTo: Zoë <zoë@bücher.example.com>\r\n"
        "Subject: Grüße\r\n\r\n"
    ).encode() + body
    async with (
        start_relay(settings_for(upstream.port)) as relay,
        aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.smtp_port, start_tls=False) as client,
    ):
        errors, _ = await client.sendmail(
            "jörg@example.org",
            ["zoë@bücher.example.com"],
            message,
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
    assert errors == {}
    (got,) = upstream.messages
    assert got.mail_from == "jörg@example.org"
    assert got.rcpt_tos == ["zoë@bücher.example.com"]
    assert "SMTPUTF8" in got.mail_options and "BODY=8BITMIME" in got.mail_options
    assert strip_received(got.data) == message
    assert b"UTF8SMTP" in got.data.split(b"\r\n\r\n")[0]


async def test_20_megabyte_message(upstream: RecordingUpstream, start_relay: StartRelay) -> None:
    line = b"0123456789" * 7 + b"\r\n"
    big = MESSAGE + line * (20_000_000 // len(line))
    async with start_relay(settings_for(upstream.port)) as relay:
        await asyncio.to_thread(
            smtplib_send, relay.smtp_port, "alice@example.org", ["bob@example.com"], big
        )
    (got,) = upstream.messages
    assert len(big) > 20_000_000
    assert strip_received(got.data) == big


async def test_refused_recipient_is_refused_to_client_others_delivered(
    start_relay: StartRelay,
    upstream: RecordingUpstream,
) -> None:
    upstream.refuse_rcpt["nobody@example.com"] = "550 5.1.1 <nobody@example.com>: no such user"
    rcpts = ["bob@example.com", "nobody@example.com", "carol@example.net"]

    def talk(port: int) -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example.org")
            client.mail("alice@example.org")
            replies = [client.rcpt(r) for r in rcpts]
            replies.append(client.data(MESSAGE))
            return replies

    async with start_relay(settings_for(upstream.port)) as relay:
        replies = await asyncio.to_thread(talk, relay.smtp_port)
    assert replies[0][0] == 250
    assert replies[1] == (550, b"5.1.1 <nobody@example.com>: no such user")
    assert replies[2][0] == 250
    assert replies[3][0] == 250
    (got,) = upstream.messages
    assert got.rcpt_tos == ["bob@example.com", "carol@example.net"]


async def test_upstream_down_gives_451_at_mail(start_relay: StartRelay) -> None:
    async with start_relay(settings_for(free_port())) as relay:
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            await asyncio.to_thread(
                smtplib_send, relay.smtp_port, "alice@example.org", ["bob@example.com"], MESSAGE
            )
    assert err.value.smtp_code == 451
    assert err.value.smtp_error.startswith(b"4.4.1 Upstream server unavailable")


@pytest.mark.parametrize(
    ("fault", "code", "status"),
    [
        ("HANG", 451, b"4.4.2"),
        ("DISCONNECT", 451, b"4.4.1"),
        ("451 4.3.0 disk full, later", 451, b"4.4.0"),
        ("554 5.6.0 content refused", 554, b"5.6.0"),
    ],
)
async def test_upstream_failure_at_data(
    start_relay: StartRelay, upstream: RecordingUpstream, fault: str, code: int, status: bytes
) -> None:
    upstream.data_hook = lambda envelope: fault
    settings = settings_for(upstream.port, upstream={"timeout": 1})
    async with start_relay(settings) as relay:
        with pytest.raises(smtplib.SMTPDataError) as err:
            await asyncio.to_thread(
                smtplib_send, relay.smtp_port, "alice@example.org", ["bob@example.com"], MESSAGE
            )
    assert err.value.smtp_code == code
    assert err.value.smtp_error.startswith(status)
    assert upstream.messages == []


async def test_upstream_4xx_text_is_quoted_to_the_client(
    upstream: RecordingUpstream, start_relay: StartRelay
) -> None:
    upstream.data_hook = lambda envelope: "452 4.3.1 Insufficient system storage"
    async with start_relay(settings_for(upstream.port)) as relay:
        with pytest.raises(smtplib.SMTPDataError) as err:
            await asyncio.to_thread(
                smtplib_send, relay.smtp_port, "alice@example.org", ["bob@example.com"], MESSAGE
            )
    assert err.value.smtp_error == (
        b"4.4.0 Upstream server deferred the message, try again later "
        b"(upstream said: 452 Insufficient system storage)"
    )


async def test_connections_to_upstream_are_reused(
    upstream: RecordingUpstream, start_relay: StartRelay
) -> None:
    async with start_relay(settings_for(upstream.port)) as relay:
        for _ in range(3):
            await asyncio.to_thread(
                smtplib_send, relay.smtp_port, "alice@example.org", ["bob@example.com"], MESSAGE
            )
    assert len(upstream.messages) == 3
    assert upstream.connections <= getattr(relay, "workers", 1)  # one pool per worker


async def test_pool_recovers_when_upstream_closed_idle_connection(
    upstream: RecordingUpstream,
) -> None:
    async with running_relay(settings_for(upstream.port)) as relay:
        await asyncio.to_thread(
            smtplib_send, relay.smtp_port, "alice@example.org", ["bob@example.com"], MESSAGE
        )
        # The upstream restarts on the same port: the pooled connection is dead.
        await upstream.stop()
        for conn in relay.upstream.pool._idle:
            conn.smtp.transport.close()  # what a restarting server does to our idle socket
        fresh = await RecordingUpstream().start(port=upstream.port)
        try:
            await asyncio.to_thread(
                smtplib_send, relay.smtp_port, "alice@example.org", ["bob@example.com"], MESSAGE
            )
        finally:
            await fresh.stop()
    assert len(fresh.messages) == 1


def send_8bit(port: int, message: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail(
            "alice@example.org", ["bob@example.com"], message, mail_options=["BODY=8BITMIME"]
        )


async def test_8bit_message_for_upstream_without_8bitmime_is_refused_not_mangled(
    start_relay: StartRelay,
    upstream: RecordingUpstream,
) -> None:
    upstream.eight_bit = False
    await upstream.stop()
    await upstream.start(port=upstream.port)
    message = "Subject: Grüße\r\n\r\nGrüße\r\n".encode()
    async with start_relay(settings_for(upstream.port)) as relay:
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            await asyncio.to_thread(send_8bit, relay.smtp_port, message)
        ascii_ok = await asyncio.to_thread(
            smtplib_send, relay.smtp_port, "alice@example.org", ["bob@example.com"], MESSAGE
        )
    assert err.value.smtp_code == 554
    assert err.value.smtp_error.startswith(b"5.6.3 Upstream server does not accept 8-bit data")
    assert ascii_ok == {} and len(upstream.messages) == 1
