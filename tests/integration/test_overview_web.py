"""The overview page and its report downloads over real HTTP (uvicorn + httpx)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from relay.admin import CONTENT_SECURITY_POLICY
from relay.quarantine import SqliteStore
from tests.helpers.admin import PASSWORD, Env, admin_env, new_message
from tests.helpers.overview import NOV_FIRST, NOV_LAST, Clock, expected_figures, seed

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
NOVEMBER = f"from={NOV_FIRST}&to={NOV_LAST}"


async def _login(client: httpx.AsyncClient) -> httpx.Response:
    page = await client.get("/login")
    match = CSRF.search(page.text)
    assert match
    form = {"username": "alice", "password": PASSWORD, "csrf_token": match.group(1)}
    return await client.post("/login", data=form)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with admin_env(tmp_path) as running:
        yield running


@pytest.fixture
async def seeded(tmp_path: Path, env: Env) -> Env:
    """The env's database with the known November, written by a second store with a clock."""
    clock = Clock()
    writer = SqliteStore(tmp_path / "q.db", clock=clock)
    await writer.open()
    try:
        await seed(writer, clock)
    finally:
        await writer.close()
    return env


async def test_reviewers_land_on_the_overview(env: Env) -> None:
    resp = await env.client.get("/")
    assert resp.status_code == 303 and resp.headers["location"] == "/overview"
    resp = await env.client.get("/overview")
    assert resp.status_code == 303 and resp.headers["location"] == "/login?next=%2Foverview"
    resp = await _login(env.client)
    assert resp.status_code == 303 and resp.headers["location"] == "/overview"
    page = await env.client.get("/overview")
    assert page.status_code == 200 and "<h1>Overview</h1>" in page.text
    assert '<a class="navlink" href="/overview">Overview</a>' in page.text


async def test_overview_shows_the_store_s_figures(seeded: Env) -> None:
    env = seeded
    await _login(env.client)
    want = await expected_figures(env.store, NOV_FIRST, NOV_LAST)
    page = await env.client.get(f"/overview?{NOVEMBER}")
    assert page.status_code == 200
    html = page.text
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "<style" not in html and "style=" not in html and "<script" not in html

    def kpi(name: str) -> str:
        match = re.search(rf'id="kpi-{name}"[^>]*><span class="kpi-n[^"]*">([^<]+)<', html)
        assert match, name
        return match.group(1)

    assert kpi("held") == str(want["held_now"]) == "2"
    assert kpi("caught") == str(want["caught"])
    assert kpi("protected") == str(want["external_addresses_protected"])
    assert kpi("median") == "20 min"  # want["median_seconds"] == 1200
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg"') == 4
    assert f'href="/quarantine/{want["largest"]}"' in html
    for fmt in ("pdf", "html", "json"):
        assert f'href="/overview/report.{fmt}?from={NOV_FIRST}&amp;to={NOV_LAST}"' in html


async def test_decided_today_counts_todays_decisions(env: Env) -> None:
    kept = await env.store.put(new_message())
    gone = await env.store.put(new_message("Second"))
    await env.store.delete(gone, "alice")
    await _login(env.client)
    html = (await env.client.get("/overview")).text
    assert re.search(r'id="kpi-today"><span class="kpi-n">1<', html)
    assert re.search(r'id="kpi-held"><span class="kpi-n">1<', html)
    assert kept


async def test_report_downloads_are_attachments_audited_and_counted(seeded: Env) -> None:
    env = seeded
    await _login(env.client)
    want = await expected_figures(env.store, NOV_FIRST, NOV_LAST)
    resp = await env.client.get(f"/overview/report.json?{NOVEMBER}")
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    disposition = resp.headers["content-disposition"]
    assert disposition == f'attachment; filename="ccguard-report-{NOV_FIRST}-{NOV_LAST}.json"'
    data = json.loads(resp.text)
    assert data["figures"]["caught"] == want["caught"]
    assert data["figures"]["external_addresses_protected"] == want["external_addresses_protected"]
    assert "@" not in resp.text

    html = await env.client.get(f"/overview/report.html?{NOVEMBER}")
    assert html.status_code == 200 and "@" not in html.text and html.text.count("<svg ") == 4
    pdf = await env.client.get(f"/overview/report.pdf?{NOVEMBER}")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    assert pdf.headers["content-type"] == "application/pdf"

    entries = [e for e in await env.store.list_audit(10) if e.action == "report"]
    assert [(e.actor, e.result) for e in entries] == [("alice", "ok")] * 3
    assert f"format=json from={NOV_FIRST} to={NOV_LAST}" in entries[-1].detail
    sample = env.metrics.registry.get_sample_value
    for fmt in ("json", "html", "pdf"):
        assert sample("ccguard_admin_reports_total", {"format": fmt}) == 1.0


async def test_bad_periods_get_a_reason(env: Env) -> None:
    await _login(env.client)
    page = await env.client.get("/overview?from=yesterday")
    assert page.status_code == 200 and "is not a date like 2026-11-01" in page.text
    resp = await env.client.get("/overview/report.json?from=2026-11-30&to=2026-11-01")
    assert resp.status_code == 400 and "ends before it starts" in resp.text
    resp = await env.client.get("/overview/report.doc")
    assert resp.status_code == 404
    async with httpx.AsyncClient(base_url=env.url) as anonymous:
        resp = await anonymous.get(f"/overview/report.json?{NOVEMBER}")
    assert resp.status_code == 303
    want = "/login?" + urlencode({"next": f"/overview/report.json?{NOVEMBER}"})
    assert resp.headers["location"] == want
