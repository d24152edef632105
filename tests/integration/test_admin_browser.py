"""The admin UI in real headless Chromium: log in, review, release with recipients hidden."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from tests.helpers.admin import EXTERNAL_RCPTS, PASSWORD, admin_env, audit_of, new_message

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


@pytest.mark.browser
async def test_review_and_release_hidden_in_chromium(tmp_path: Path) -> None:
    # Fails (never skips) without the browser: the UI must be checked for real.
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: install the chromium package"
    ARTIFACTS.mkdir(exist_ok=True)
    async with admin_env(tmp_path) as env, async_playwright() as pw:
        msg_id = await env.store.put(new_message("Welcome to the training"))
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{env.url}/quarantine")
            assert "/login" in page.url
            await page.get_by_label("User name").fill("alice")
            await page.get_by_label("Password").fill(PASSWORD)
            await page.screenshot(path=ARTIFACTS / "admin-login.png")
            await page.get_by_role("button", name="Log in").click()

            await page.wait_for_url(f"{env.url}/quarantine")
            link = page.get_by_role("link", name="Welcome to the training")
            assert await link.is_visible()
            await page.screenshot(path=ARTIFACTS / "admin-list.png", full_page=True)
            await link.click()

            await page.wait_for_url(f"{env.url}/quarantine/{msg_id}")
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

        [got] = env.upstream.received
        header_block = got.data.split(b"\r\n\r\n", 1)[0].decode()
        assert not any(addr in header_block for addr in EXTERNAL_RCPTS)
        assert "X-CCGuard-Action: rewrite; released" in header_block
        assert set(EXTERNAL_RCPTS) <= set(got.rcpt_tos)
        assert await audit_of(env, msg_id) == [
            ("alice", "view", "ok"),
            ("alice", "release", "ok"),
            ("alice", "view", "ok"),
        ]
