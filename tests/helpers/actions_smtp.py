"""Fixtures for the actions tests on a real upstream and a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from relay.actions import Dispatcher
from relay.envelope import Envelope
from relay.observability.metrics import Metrics
from relay.observability.redact import Redactor
from relay.quarantine import SqliteStore
from relay.upstream import UpstreamClient, UpstreamTransaction
from tests.helpers.actions import MATCHER
from tests.helpers.relay import LogCapture, settings_for
from tests.helpers.upstream import Received, RecordingUpstream

__all__ = ["ENV", "MSG", "RCPTS", "REDACTOR", "TRACE", "act", "client", "dispatcher",
           "fail_nth_data", "live", "log", "metrics", "notices", "store"]  # fmt: skip

TRACE = (
    b"Received: from mua.example.org ([127.0.0.1])\r\n"
    b"\tby ccguard.test (ccguard) with ESMTP id Q1;\r\n\tThu, 1 Jan 2026 00:00:00 +0000\r\n"
)
MSG = (
    b"From: Ann <ann@example.org>\r\n"
    b"To: Guest One <g1@example.com>, g2@example.net, Bob <bob@example.org>\r\n"
    b"Cc: g3@example.com, g4@example.net\r\n"
    b"Subject: Training week\r\n"
    b"Message-ID: <m1@example.org>\r\n"
    b"\r\nHello everyone.\r\n"
)
RCPTS = ("g1@example.com", "g2@example.net", "bob@example.org", "g3@example.com", "g4@example.net")
ENV = Envelope("ann@example.org", RCPTS, client_ip="127.0.0.1", queue_id="Q1")


REDACTOR = Redactor("actions-test-key")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    db = SqliteStore(tmp_path / "q.db", busy_timeout=0.2)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def client(upstream: RecordingUpstream) -> AsyncIterator[UpstreamClient]:
    up = UpstreamClient(settings_for(upstream.port).upstream, local_hostname="ccguard.test")
    try:
        yield up
    finally:
        await up.close()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def log() -> LogCapture:
    return LogCapture()


def dispatcher(
    upstream: RecordingUpstream,
    client: UpstreamClient,
    store: SqliteStore,
    metrics: Metrics,
    log: LogCapture,
    **notifications: Any,
) -> Dispatcher:
    settings = settings_for(upstream.port, notifications=notifications)
    return Dispatcher(
        upstream=client, store=store, matcher=MATCHER, settings=settings,
        metrics=metrics, log=log.logger, notice_retry_delay=0.01, redact=REDACTOR.address,
    )  # fmt: skip


async def live(client: UpstreamClient, env: Envelope = ENV) -> UpstreamTransaction:
    txn = await client.begin(env.mail_from, env.mail_options)
    for rcpt in env.rcpt_tos:
        assert (await txn.rcpt(rcpt)).is_success
    return txn


@pytest.fixture
async def act(
    upstream: RecordingUpstream,
    client: UpstreamClient,
    store: SqliteStore,
    metrics: Metrics,
    log: LogCapture,
) -> AsyncIterator[Dispatcher]:
    d = dispatcher(upstream, client, store, metrics, log)
    try:
        yield d
    finally:
        await d.close()


def fail_nth_data(n: int, reply: str) -> Callable[[Any], str | None]:
    """A data_hook that answers the n-th DATA (counted over the whole test) with ``reply``."""
    calls = 0

    def hook(envelope: Any) -> str | None:
        nonlocal calls
        calls += 1
        return reply if calls == n else None

    return hook


def notices(upstream: RecordingUpstream) -> list[Received]:
    """The messages the upstream got with the null envelope sender (notices, bounces)."""
    return [m for m in upstream.messages if m.mail_from in ("", "<>")]
