"""Sender self-service in real headless Chromium: the link from the notice that arrived at
the recording upstream, the sender's buttons, and the reviewers' "Release requests" page."""

from __future__ import annotations

import os

import pytest
from playwright.async_api import Browser, Page, async_playwright

from relay.credentials.users import UserDB
from tests.helpers.admin import EXTERNAL_RCPTS, INTERNAL_RCPTS, PASSWORD
from tests.helpers.relay import running_relay
from tests.helpers.selfservice import SENDER, held_rules, notice_link, review_settings, send_held
from tests.helpers.upstream import RecordingUpstream
from tests.integration.test_admin_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS


async def _browser(pw: object) -> Browser:
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: install the chromium package"
    ARTIFACTS.mkdir(exist_ok=True)
    return await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)  # type: ignore[attr-defined,no-any-return]


@pytest.mark.browser
async def test_sender_clicks_the_notice_link_and_sends_hidden(upstream: RecordingUpstream) -> None:
    settings = review_settings(upstream.port)
    async with running_relay(settings) as relay, async_playwright() as pw:
        mid = await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        browser = await _browser(pw)
        try:
            page = await browser.new_page(viewport={"width": 1100, "height": 900})
            await page.goto(link)
            heading = page.get_by_role("heading", name="What do you want to do?")
            assert await heading.is_visible()
            assert await page.get_by_text("trainee0@example.com", exact=True).is_visible()
            await page.screenshot(path=ARTIFACTS / "sender-page.png", full_page=True)
            await page.get_by_role("button", name="Send with recipients hidden").click()
            status = page.get_by_role("status")
            await status.wait_for()
            assert "external addresses hidden" in await status.inner_text()
            await page.screenshot(path=ARTIFACTS / "sender-done.png", full_page=True)

            await page.goto(link)  # the link no longer releases anything
            alert = page.get_by_role("alert")
            assert "already used" in await page.title() or "used" in await alert.inner_text()
            assert await page.get_by_role("button", name="Send with recipients hidden").count() == 0
        finally:
            await browser.close()
        stored = await relay.store.get(mid)
        assert stored is not None and stored.status == "released"
    sent = [m for m in upstream.messages if m.mail_from == SENDER]
    assert len(sent) == 1 and set(sent[0].rcpt_tos) == {*INTERNAL_RCPTS, *EXTERNAL_RCPTS}
    header_block = sent[0].data.split(b"\r\n\r\n", 1)[0].decode()
    assert not any(addr in header_block for addr in EXTERNAL_RCPTS)


async def _log_in(page: Page, url: str, user: str) -> None:
    await page.goto(f"{url}/")
    await page.get_by_label("User name").fill(user)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()


@pytest.mark.browser
async def test_reviewers_see_requests_first_and_four_eyes_needs_two(
    upstream: RecordingUpstream,
) -> None:
    settings = review_settings(upstream.port, rules=held_rules(four_eyes=True))
    users = UserDB(settings.admin.users_file)
    users.set_password("alice", PASSWORD)
    users.set_password("bob", PASSWORD)
    async with running_relay(settings) as relay, async_playwright() as pw:
        await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        url = f"http://127.0.0.1:{relay.http_port('admin')}"
        browser = await _browser(pw)
        try:
            sender = await browser.new_page()
            await sender.goto(link)
            await sender.get_by_label("It must go as written, because…").fill(
                "The trainees agreed to share addresses"
            )
            await sender.get_by_role("button", name="Ask for it to be sent as written").click()
            await sender.get_by_role("status").wait_for()

            for n, user in enumerate(("alice", "bob")):
                context = await browser.new_context(viewport={"width": 1200, "height": 900})
                page = await context.new_page()
                await _log_in(page, url, user)
                await page.wait_for_url(f"{url}/requests")  # requests come first
                assert await page.get_by_text("The trainees agreed to share addresses").is_visible()
                if n == 1:
                    approvals = await page.locator(".approvals").first.inner_text()
                    assert "1 of 2" in approvals and "alice" in approvals
                    await page.screenshot(path=ARTIFACTS / "requests-page.png", full_page=True)
                await page.get_by_role("button", name="Approve: send as written").click()
                await page.get_by_role("status").wait_for()
                said = await page.get_by_role("status").inner_text()
                assert ("another reviewer" in said) if n == 0 else ("delivered as sent" in said)
                if n == 1:
                    decided = await page.locator("table.messages").inner_text()
                    assert "alice, bob" in decided
                await context.close()
        finally:
            await browser.close()
    assert len([m for m in upstream.messages if m.mail_from == SENDER]) == 1
