"""``[limits] messages_per_minute`` per SMTP AUTH user: two users behind one client IP
each have their own budget.  Real aiosmtplib clients (STARTTLS, AUTH PLAIN) against a
real ccguard whose allowed networks exclude loopback, so relaying needs AUTH."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosmtplib

from tests.helpers.observability import parse_metrics
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.smtp_auth import APP2_PASSWORD, OUTSIDE, PASSWORD, tls_smtp
from tests.helpers.tls import Pki
from tests.helpers.upstream import RecordingUpstream

MESSAGE = b"From: <noreply@example.org>\r\nTo: <bob@example.com>\r\nSubject: rate\r\n\r\nhi\r\n"


@asynccontextmanager
async def logged_in(port: int, user: str, password: str) -> AsyncIterator[aiosmtplib.SMTP]:
    """A client from 127.0.0.1 that did STARTTLS and logged in as ``user``."""
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, timeout=10, validate_certs=False
    ) as client:
        await client.login(user, password)
        yield client


async def send(client: aiosmtplib.SMTP) -> tuple[int, str]:
    """One message to bob@example.com: the MAIL FROM reply if refused, else DATA's."""
    try:
        _, reply = await client.sendmail("noreply@example.org", ["bob@example.com"], MESSAGE)
    except aiosmtplib.SMTPSenderRefused as refused:
        return refused.code, refused.message
    return 250, reply


async def test_each_authenticated_user_has_its_own_message_rate(
    upstream: RecordingUpstream, pki: Pki, users_file: Path
) -> None:
    smtp = tls_smtp(pki, users_file, allowed_networks=OUTSIDE)
    settings = settings_for(upstream.port, smtp=smtp, limits={"messages_per_minute": 2})
    async with running_relay(settings) as relay:
        port = relay.smtp_port
        async with (
            logged_in(port, "app1", PASSWORD) as app1,
            logged_in(port, "app2", APP2_PASSWORD) as app2,
        ):
            first = [await send(app1), await send(app1), await send(app1)]
            second = [await send(app2), await send(app2)]  # same IP, its own budget
            over = await send(app2)
        scrape = parse_metrics(relay.metrics.render()[0])
    assert [code for code, _ in first[:2] + second] == [250] * 4
    limited = (451, "4.7.1 Rate limit exceeded, try again later")
    assert first[2] == limited and over == limited
    assert len(upstream.messages) == 4
    assert scrape.value("ccguard_smtp_rate_limited_messages_total") == 2
