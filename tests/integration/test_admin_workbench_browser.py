"""The reviewer's workbench in real headless Chromium at desktop (1280 px) and phone
(390 px) widths: search, bulk release, the confirm step, the history panel, the audit
page.  Screenshots are kept in the test's tmp dir and copied to test-artifacts/workbench/."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from relay.quarantine.search import MessageQuery
from tests.helpers.admin import EXTERNAL_RCPTS, PASSWORD, Env, admin_env, new_message
from tests.integration.test_admin_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

SHOTS = ARTIFACTS / "workbench"


async def _seed(env: Env) -> dict[str, str]:
    specs = [
        ("Invoice 1 for November", "billing@example.org", 1_764_000_000),
        ("Invoice 2 for November", "billing@example.org", 1_764_000_100),
        ("Invoice 3 for November", "billing@example.org", 1_764_000_200),
        ("Welcome to the training", "coordinator@example.org", 1_764_000_300),
        ("Parents' evening on Thursday", "a.long.sender.name@school.example.org", 1_764_000_400),
    ]  # fmt: skip
    ids = {}
    for subject, sender, at in specs:
        new = dataclasses.replace(new_message(subject), mail_from=sender, received_at=at)
        ids[subject] = await env.store.put(new)
    return ids


class Shots:
    """Screenshots of one run: into tmp_path, and copied to the artifacts folder."""

    def __init__(self, page: Page, tmp: Path, width: int) -> None:
        self.page, self.tmp, self.width = page, tmp, width
        SHOTS.mkdir(parents=True, exist_ok=True)

    async def take(self, name: str) -> None:
        path = self.tmp / f"workbench-{name}-{self.width}.png"
        await self.page.screenshot(path=path, full_page=True)
        shutil.copy(path, SHOTS / path.name)
        # A phone layout that scrolls sideways is broken: everything fits the width.
        overflow = await self.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} at {self.width} px is {overflow} px too wide"


async def _log_in(page: Page, url: str, shots: Shots) -> None:
    await page.goto(f"{url}/quarantine")
    await page.get_by_label("User name").fill("alice")
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Log in").click()
    await page.get_by_role("alert").wait_for()
    assert await page.get_by_label("User name").input_value() == "alice"  # kept
    await shots.take("login-wrong-password")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{url}/quarantine")


async def _search(page: Page, shots: Shots) -> None:
    await page.get_by_label("Subject").fill("invoice")
    await page.get_by_role("button", name="Search").click()
    await page.wait_for_url("**subject=invoice**")
    assert (
        "3 messages held, newest first · page 1 of 1." in await page.locator("#count").inner_text()
    )
    assert await page.get_by_role("link", name="Welcome to the training").count() == 0
    await shots.take("search")
    await page.get_by_label("Sender").fill("*@example.com")
    await page.get_by_role("button", name="Search").click()
    no_match = page.locator("#no-match")
    await no_match.wait_for()
    assert 'No held message has sender "*@example.com"' in await no_match.inner_text()
    await shots.take("search-no-match")


async def _bulk_release(page: Page, env: Env, url: str, ids: dict[str, str], shots: Shots) -> None:
    await page.goto(f"{url}/quarantine?subject=invoice")
    await page.locator(f"#pick-{ids['Invoice 1 for November']}").check()
    await page.locator(f"#pick-{ids['Invoice 2 for November']}").check()
    await shots.take("bulk-selected")
    await page.get_by_role("button", name="Release with recipients hidden…").click()
    heading = page.get_by_role("heading", name="Release 2 messages with recipients hidden?")
    await heading.wait_for()
    assert env.upstream.messages == []
    await shots.take("bulk-confirm")
    await page.get_by_role("button", name="Yes, release 2 messages").click()
    await page.wait_for_url("**/quarantine/bulk/done**")
    title = page.get_by_role("heading", name="2 of 2 messages released with recipients hidden")
    assert await title.is_visible()
    await shots.take("bulk-summary")
    assert len(env.upstream.messages) == 2
    for got in env.upstream.messages:
        assert not any(a.encode() in got.data.split(b"\r\n\r\n")[0] for a in EXTERNAL_RCPTS)


async def _detail_confirm_delete(page: Page, env: Env, url: str, msg_id: str, shots: Shots) -> None:
    await page.goto(f"{url}/quarantine/{msg_id}")
    history = page.locator("#history")
    assert await history.get_by_text("received", exact=True).is_visible()
    assert await history.get_by_text("view", exact=True).count() == 1
    assert await page.get_by_text("internal", exact=True).first.is_visible()
    await shots.take("detail-history")
    await page.get_by_role("link", name="Delete…").click()
    await page.get_by_role("heading", name="Delete this message?").wait_for()
    await shots.take("confirm-delete")
    await page.get_by_role("button", name="Yes, delete it").click()
    notice = page.get_by_role("status").first
    await notice.wait_for()
    assert "Deleted" in await notice.inner_text()
    await page.reload()  # POST/redirect/GET: the reload asks nothing and repeats nothing
    stored = await env.store.get(msg_id)
    assert stored is not None and stored.status == "deleted"


async def _bulk_delete_all_matching(page: Page, env: Env, url: str, shots: Shots) -> None:
    await page.goto(f"{url}/quarantine?subject=invoice")
    assert "1 message held" in await page.locator("#count").inner_text()  # two were released
    await page.get_by_label("all 1 matching this search").check()
    await page.get_by_role("button", name="Delete…").click()
    await page.get_by_role("heading", name="Delete 1 message?").wait_for()
    await shots.take("bulk-delete-confirm")
    await page.get_by_role("button", name="Yes, delete 1 message").click()
    await page.wait_for_url("**/quarantine/bulk/done**")
    assert await page.get_by_role("heading", name="1 of 1 message deleted").is_visible()
    await shots.take("bulk-delete-summary")
    page3 = await env.store.search(MessageQuery(subject="Invoice 3"))
    assert [m.status for m in page3.items] == ["deleted"]


async def _release_as_sent_confirm(page: Page, url: str, msg_id: str, shots: Shots) -> None:
    await page.goto(f"{url}/quarantine/{msg_id}")
    await page.get_by_role("link", name="Release as sent…").click()
    await page.get_by_role("heading", name="Release as sent?").wait_for()
    text = await page.locator(".consequences").inner_text()
    assert f"{len(EXTERNAL_RCPTS)} of them external" in text
    await shots.take("confirm-release-as-sent")
    await page.get_by_role("link", name="Cancel").click()
    await page.wait_for_url(f"{url}/quarantine/{msg_id}")


async def _audit(page: Page, url: str, shots: Shots) -> None:
    await page.goto(f"{url}/audit")
    await page.get_by_label("Action").fill("release")
    await page.get_by_role("button", name="Filter").click()
    await page.wait_for_url("**action=release**")
    rows = page.locator("table.audit tbody tr")
    assert await rows.count() == 2
    await shots.take("audit")


@pytest.mark.browser
@pytest.mark.parametrize("width", [1280, 390])
async def test_workbench_in_chromium(tmp_path: Path, width: int) -> None:
    # Fails (never skips) without the browser: the UI must be checked for real.
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: install the chromium package"
    async with admin_env(tmp_path) as env, async_playwright() as pw:
        ids = await _seed(env)
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            viewport: Any = {"width": width, "height": 900}
            page = await browser.new_page(viewport=viewport)
            shots = Shots(page, tmp_path, width)
            await _log_in(page, env.url, shots)
            await shots.take("list")
            await _search(page, shots)
            await _bulk_release(page, env, env.url, ids, shots)
            await _bulk_delete_all_matching(page, env, env.url, shots)
            await _release_as_sent_confirm(page, env.url, ids["Welcome to the training"], shots)
            await _detail_confirm_delete(
                page, env, env.url, ids["Parents' evening on Thursday"], shots
            )
            await _audit(page, env.url, shots)
        finally:
            await browser.close()
