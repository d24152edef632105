"""A relay built after configure_logging (as ``ccguard serve`` builds it) writes
its one transaction line, fields in the documented order, through the
configured handler and level, as soon as the transaction ends."""

from __future__ import annotations

import asyncio
import smtplib

import pytest
import structlog

from relay.app import Relay
from relay.observability.redact import Redactor
from tests.helpers.observability import captured_logging, json_lines
from tests.helpers.relay import settings_for
from tests.helpers.upstream import RecordingUpstream

MESSAGE = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nHello\r\n"
FIELDS = [
    "timestamp", "level", "logger", "event", "queue_id", "client_ip", "auth_user", "tls",
    "tls_cipher", "sender", "recipients", "size", "line_endings_normalised", "action", "rule",
    "calendar_fallback", "exposure", "reply_code", "reply_status", "inspect_seconds",
    "duration_seconds",
]  # fmt: skip


def _send(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)


async def test_the_transaction_line_is_written_when_the_transaction_ends(
    upstream: RecordingUpstream,
) -> None:
    settings = settings_for(upstream.port)
    with captured_logging(hash_key="line-key", level="info") as out:
        relay = Relay(settings)
        await relay.start()
        try:
            await asyncio.to_thread(_send, relay.smtp_port)
            lines = [e for e in json_lines(out.getvalue()) if e["event"] == "transaction"]
        finally:
            await relay.stop()
    (line,) = lines  # already there before the relay stopped
    assert list(line) == FIELDS
    assert line["sender"] == Redactor.from_settings(settings.logging).address("alice@example.org")
    assert line["logger"] == "ccguard" and line["level"] == "info"
    assert (line["action"], line["reply_code"], line["recipients"]) == ("pass", 250, 1)
    assert line["exposure"]["visible_total"] == 1
    assert len(upstream.messages) == 1


async def test_a_relay_takes_the_level_configured_before_it(upstream: RecordingUpstream) -> None:
    settings = settings_for(upstream.port)
    with captured_logging(hash_key="line-key", level="warning") as out:
        relay = Relay(settings)
        await relay.start()
        try:
            await asyncio.to_thread(_send, relay.smtp_port)
        finally:
            await relay.stop()
    assert len(upstream.messages) == 1
    assert [e for e in json_lines(out.getvalue()) if e["level"] == "info"] == []


async def test_a_relay_built_before_configure_logging_still_writes_through_it(
    upstream: RecordingUpstream, capsys: pytest.CaptureFixture[str]
) -> None:
    """Built first (structlog not configured yet), the relay must not keep structlog's
    defaults: console lines on stdout, past the handler and its address net."""
    structlog.reset_defaults()  # as a program that builds its Relay, then configures
    relay = Relay(settings_for(upstream.port))
    with captured_logging(hash_key="line-key", level="info") as out:
        await relay.start()
        try:
            await asyncio.to_thread(_send, relay.smtp_port)
        finally:
            await relay.stop()
    lines = [e for e in json_lines(out.getvalue()) if e["event"] == "transaction"]
    assert [(e["logger"], e["reply_code"]) for e in lines] == [("ccguard", 250)]
    assert "transaction" not in capsys.readouterr().out
