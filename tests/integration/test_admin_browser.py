"""The admin UI in real headless Chromium: log in, review, release with recipients hidden."""

from __future__ import annotations

import asyncio
import os
import smtplib
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from relay.credentials.users import UserDB
from tests.helpers.admin import EXTERNAL_RCPTS, INTERNAL_RCPTS, PASSWORD, make_message
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def send_through(port: int, message: bytes) -> tuple[int, bytes]:
    """A real SMTP client sends ``message`` to every recipient through ccguard."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("app.example.org")
        client.mail("coordinator@example.org")
        for rcpt in (*INTERNAL_RCPTS, *EXTERNAL_RCPTS):
            client.rcpt(rcpt)
        return client.data(message)


@pytest.mark.browser
async def test_review_and_release_hidden_in_chromium(upstream: RecordingUpstream) -> None:
    # Fails (never skips) without the browser: the UI must be checked for real.
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: install the chromium package"
    ARTIFACTS.mkdir(exist_ok=True)
    rules = [{"name": "hold-training", "min_visible_external": 5, "action": "quarantine"}]
    settings = settings_for(upstream.port, policy={"rules": rules})
    UserDB(settings.admin.users_file).set_password("alice", PASSWORD)
    async with running_relay(settings) as relay, async_playwright() as pw:
        code, text = await asyncio.to_thread(
            send_through, relay.smtp_port, make_message("Welcome to the training")
        )
        assert code == 250 and text.startswith(b"2.0.0 held for review as "), text
        msg_id = text.decode().rsplit(" ", 1)[1]
        assert upstream.messages == []
        url = f"http://127.0.0.1:{relay.http_port('admin')}"
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{url}/quarantine")
            assert "/login" in page.url
            await page.get_by_label("User name").fill("alice")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.screenshot(path=ARTIFACTS / "admin-login.png")
            await page.get_by_role("button", name="Log in").click()

            await page.wait_for_url(f"{url}/quarantine")
            link = page.get_by_role("link", name="Welcome to the training")
            assert await link.is_visible()
            await page.screenshot(path=ARTIFACTS / "admin-list.png", full_page=True)
            await link.click()

            await page.wait_for_url(f"{url}/quarantine/{msg_id}")
            heading = page.get_by_role("heading", name="Why it was held")
            assert await heading.is_visible()
            assert await page.get_by_text("trainee0@example.com", exact=True).is_visible()
            await page.screenshot(path=ARTIFACTS / "admin-detail.png", full_page=True)
            await page.get_by_role("button", name="Release with recipients hidden").click()

            notice = page.get_by_role("status")
            await notice.wait_for()
            assert "external recipients hidden" in await notice.inner_text()
            await page.screenshot(path=ARTIFACTS / "admin-released.png", full_page=True)
        finally:
            await browser.close()
        audit = [(e.actor, e.action, e.result) for e in await relay.store.list_audit(target=msg_id)]

    [got] = upstream.messages
    header_block = got.data.split(b"\r\n\r\n", 1)[0].decode()
    assert not any(addr in header_block for addr in EXTERNAL_RCPTS)
    assert "X-CCGuard-Action: rewrite; released" in header_block
    assert set(got.rcpt_tos) == {*INTERNAL_RCPTS, *EXTERNAL_RCPTS}
    assert sorted(audit) == sorted(
        [("alice", "view", "ok"), ("alice", "release", "ok"), ("alice", "view", "ok")]
    )
