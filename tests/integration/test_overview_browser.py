"""The overview in real headless Chromium at desktop and phone widths: the charts are
there, their bars carry the store's numbers, the tables behind them open without
JavaScript, and nothing overflows a 390 px screen.  Screenshots go to test-artifacts/."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from relay.admin.figures import OUTCOME_LABELS
from relay.credentials.users import UserDB
from relay.quarantine import SqliteStore
from tests.helpers.admin import PASSWORD, make_message
from tests.helpers.overview import NOV_FIRST, NOV_LAST, Clock, expected_figures, seed
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream
from tests.integration.test_admin_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, send_through

RULES = [{"name": "bulk-external", "min_visible_external": 5, "action": "quarantine"}]
BARS = "svg[data-chart={chart}] rect[data-value]"


async def _bars(page: Page, chart: str, nth: int = 0) -> list[dict[str, Any]]:
    svg = page.locator(f"svg[data-chart={chart}]").nth(nth)
    got: list[dict[str, Any]] = await svg.locator("rect[data-value]").evaluate_all(
        "els => els.map(e => ({label: e.dataset.label, series: e.dataset.series,"
        " value: Number(e.dataset.value), title: e.querySelector('title').textContent}))"
    )
    return got


async def _check_overview(page: Page, want: dict[str, Any], width: int) -> None:
    assert await page.get_by_role("heading", name="Overview", exact=True).is_visible()
    assert await page.locator("#kpi-caught .kpi-n").inner_text() == str(want["caught"])
    protected = await page.locator("#kpi-protected .kpi-n").inner_text()
    assert protected == str(want["external_addresses_protected"])
    assert await page.locator("#kpi-held .kpi-n").inner_text() == str(want["held_now"])
    # Caught per day: one bar piece per (day, outcome), adding up to the store's counts.
    per_day = await _bars(page, "stacked")
    assert sum(b["value"] for b in per_day) == want["caught"]
    for outcome, count in want["by_outcome"].items():
        label = OUTCOME_LABELS[outcome]
        assert sum(b["value"] for b in per_day if b["series"] == label) == count, outcome
    assert all(b["title"] == f"{b['label']}, {b['series']}: {b['value']}" for b in per_day)
    largest = await _bars(page, "horizontal", 0)
    assert largest[0]["label"] == want["largest"] and largest[0]["value"] == 300
    rules = await _bars(page, "horizontal", 1)
    assert sum(b["value"] for b in rules) == want["caught"]
    # Every chart is an image with a title, and its table is one click away (no script).
    titles = await page.locator("svg.chart > title").evaluate_all(
        "els => els.map(e => e.textContent)"
    )
    assert len(titles) == 4 and titles[0] == "Messages caught per day, by what became of them"
    table = page.locator("#per-day-table")
    assert not await table.is_visible()
    await page.get_by_text("Table: caught per day").click()
    assert await table.is_visible()
    assert await page.locator("#per-day-table tfoot td").last.inner_text() == str(want["caught"])
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= width, f"page is {overflow} px wide at {width} px"
    for svg in await page.locator("svg.chart").all():
        box = await svg.bounding_box()
        assert box is not None and box["width"] <= width


@pytest.mark.browser
async def test_overview_charts_match_the_store_at_desktop_and_phone_width(
    upstream: RecordingUpstream,
) -> None:
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: install the chromium package"
    ARTIFACTS.mkdir(exist_ok=True)
    settings = settings_for(upstream.port, policy={"rules": RULES})
    UserDB(settings.admin.users_file).set_password("alice", PASSWORD)
    clock = Clock()
    writer = SqliteStore(settings.quarantine.database, clock=clock)
    async with running_relay(settings) as relay, async_playwright() as pw:
        await writer.open()
        try:
            await seed(writer, clock)  # November, as another process on the same file
        finally:
            await writer.close()
        code, _ = await asyncio.to_thread(send_through, relay.smtp_port, make_message("Today"))
        assert code == 250  # held now, through the real relay
        want = await expected_figures(relay.store, NOV_FIRST, NOV_LAST)
        url = f"http://127.0.0.1:{relay.http_port('admin')}"
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for width, height in ((1280, 900), (390, 844)):
                page = await browser.new_page(viewport={"width": width, "height": height})
                await page.goto(f"{url}/")
                await page.get_by_label("User name").fill("alice")
                await page.get_by_label("Password").fill(PASSWORD)
                await page.get_by_role("button", name="Log in").click()
                await page.wait_for_url(f"{url}/overview")
                await page.goto(f"{url}/overview?from={NOV_FIRST}&to={NOV_LAST}")
                await _check_overview(page, want, width)
                await page.screenshot(path=ARTIFACTS / f"overview-{width}.png", full_page=True)
                await page.close()
        finally:
            await browser.close()
    assert want["held_now"] == 3  # two seeded, one sent today
