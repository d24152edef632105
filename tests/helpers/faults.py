"""The client side of the fault tests: one attempt at sending, and what to expect."""

from __future__ import annotations

import smtplib
from collections.abc import AsyncIterator

import pytest

from relay.app import Relay
from tests.helpers.faulty_upstream import FaultyUpstream
from tests.helpers.upstream import wait_until

__all__ = [
    "MESSAGE",
    "OK",
    "TIMED_OUT",
    "UNAVAILABLE",
    "attempt",
    "deferred",
    "delivered",
    "faulty",
    "in_step",
]

SENDER = "alice@example.org"
MESSAGE = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
OK = (250, "2.0.0 Ok: queued")  # the upstream's own reply, passed through
UNAVAILABLE = (451, "4.4.1 Upstream server unavailable, try again later")
TIMED_OUT = (451, "4.4.2 Upstream server timed out, try again later")
_DEFERRED = "4.4.0 Upstream server deferred the message, try again later"


def deferred(upstream_said: str) -> tuple[int, str]:
    """ccguard's 451 for an upstream 4xx (or a 5xx greeting), quoting the upstream."""
    return 451, f"{_DEFERRED} (upstream said: {upstream_said})"


@pytest.fixture
async def faulty() -> AsyncIterator[FaultyUpstream]:
    server = await FaultyUpstream().start()
    try:
        yield server
    finally:
        await server.stop()


def attempt(
    port: int, message: bytes = MESSAGE, rcpts: tuple[str, ...] = ("bob@example.com",)
) -> tuple[str, tuple[int, str]]:
    """Send one message as a client's queue would: the command whose reply was
    not a success (or ``data``), and that reply."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=30)
    try:
        client.ehlo("client.example.org")
        code, text = client.mail(SENDER)
        if code != 250:
            return "mail", (code, text.decode())
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            if code != 250:
                return "rcpt", (code, text.decode())
        code, text = client.data(message)
        return "data", (code, text.decode())
    finally:
        try:
            client.quit()
        except smtplib.SMTPException:
            client.close()


def delivered(up: FaultyUpstream) -> list[bytes]:
    """The messages the upstream has, without ccguard's Received header."""
    return [m.data[m.data.index(b"From: ") :] for m in up.messages]


async def in_step(relay: Relay, up: FaultyUpstream) -> None:
    """Every connection ccguard keeps open upstream is an idle one in its pool."""
    await wait_until(
        lambda: up.open_connections == relay.upstream.pool.idle_count,
        lambda: f"{up.open_connections} open upstream, {relay.upstream.pool.idle_count} idle",
    )
