"""The overview and its report read a whole period (up to 500,000 messages): computing
the figures must not stop the relay's event loop, which also serves SMTP."""

from __future__ import annotations

import asyncio
import re
import smtplib
import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx

from relay.credentials.users import UserDB
from tests.helpers.admin import PASSWORD
from tests.helpers.relay import running_relay
from tests.helpers.selfservice import review_settings, send_held
from tests.helpers.upstream import RecordingUpstream

ROWS = 150_000
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _fill(database: str, template: str) -> None:
    """ROWS copies of one real held message, each from another sender, in the real file."""
    with sqlite3.connect(database, timeout=30) as conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO messages SELECT 'load' || i, received_at - i, status, mail_from, "
            "'user' || i || '@example.org', rcpt_tos, mail_options, client_ip, client_helo, "
            "queue_id, subject, size, action, rule, reason, exposure, released_at, "
            "released_by, release_mode, deleted_at, deleted_by, NULL, NULL, NULL, auth_user "
            "FROM messages, n WHERE id = ?",
            (ROWS, template),
        )


def _pings(port: int, stop: threading.Event, gaps: list[float]) -> None:
    """SMTP NOOPs one after the other; the longest wait for a reply is what a client saw."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("app.example.org")
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            start = time.monotonic()
            assert client.noop()[0] == 250
            gaps.append(time.monotonic() - start)
            stop.wait(0.02)


async def test_a_big_report_does_not_stall_smtp(upstream: RecordingUpstream) -> None:
    settings = review_settings(upstream.port)
    UserDB(settings.admin.users_file).set_password("alice", PASSWORD)
    async with running_relay(settings) as relay:
        mid = await send_held(relay.smtp_port)
        await asyncio.to_thread(_fill, settings.quarantine.database, mid)
        base = f"http://127.0.0.1:{relay.http_port('admin')}"
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            token = CSRF.search((await http.get("/login")).text)
            assert token
            form = {"username": "alice", "password": PASSWORD, "csrf_token": token.group(1)}
            assert (await http.post("/login", data=form)).status_code == 303
            today = datetime.now(UTC).date()
            period = {"from": (today - timedelta(days=300)).isoformat(), "to": today.isoformat()}
            stop, gaps = threading.Event(), list[float]()
            pinger = asyncio.create_task(asyncio.to_thread(_pings, relay.smtp_port, stop, gaps))
            try:
                started = time.monotonic()
                report = await http.get("/overview/report.json", params=period)
                page = await http.get("/overview", params=period)
                took = time.monotonic() - started
            finally:
                stop.set()
                await pinger
    assert report.status_code == 200 and page.status_code == 200
    assert report.json()["figures"]["caught"] == ROWS + 1
    assert len(gaps) > 3
    # The figures of 150,000 messages take seconds; SMTP must answer meanwhile.
    assert max(gaps) < max(1.0, took / 4), (max(gaps), took)
