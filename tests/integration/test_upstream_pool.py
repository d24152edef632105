"""The upstream pool matches the load: no connection per message at steady concurrency,
idle connections closed after ``pool_idle_timeout``, and the churn counted."""

from __future__ import annotations

import asyncio

import aiosmtplib

from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import wait_until

MESSAGE = (
    b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.com>\r\n"
    b"Subject: pool\r\n\r\nHello\r\n"
)
SESSIONS = 8
PER_SESSION = 10


async def one_session(port: int) -> None:
    """A client that keeps its connection and sends PER_SESSION messages in a row."""
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as client:
        for _ in range(PER_SESSION):
            await client.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)


def opened_total(relay: object) -> float:
    metric = relay.metrics.upstream_connections_opened  # type: ignore[attr-defined]
    return float(metric._value.get())


async def test_concurrent_sessions_reuse_one_upstream_connection_each(
    upstream: RecordingUpstream,
) -> None:
    async with running_relay(settings_for(upstream.port)) as relay:
        await asyncio.gather(*(one_session(relay.smtp_port) for _ in range(SESSIONS)))
        await upstream.wait_for(SESSIONS * PER_SESSION)
        # 80 messages over 8 concurrent sessions: at most one connection per session
        # (the old fixed pool of 4 opened a new one for most messages).
        assert upstream.connections <= SESSIONS, upstream.connections
        assert opened_total(relay) == upstream.connections
        assert relay.upstream.pool.idle_count == upstream.open_connections


async def test_idle_upstream_connections_are_closed_after_the_idle_timeout(
    upstream: RecordingUpstream,
) -> None:
    settings = settings_for(upstream.port, upstream={"pool_idle_timeout": 0.3})
    async with running_relay(settings) as relay:
        await asyncio.gather(*(one_session(relay.smtp_port) for _ in range(3)))
        await upstream.wait_for(3 * PER_SESSION)
        # Nothing else happens: the pool's timer alone must QUIT the idle connections.
        await wait_until(
            lambda: upstream.open_connections == 0,
            lambda: f"{upstream.open_connections} upstream connections still open",
            timeout=10,
        )
        assert relay.upstream.pool.idle_count == 0
