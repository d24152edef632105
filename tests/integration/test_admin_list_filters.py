# ruff: noqa: F811  (a test takes the imported `cli` fixture as its argument)
"""``GET /api/quarantine`` (real uvicorn server) and ``ccguard quarantine list`` (a real
subprocess) take the web search's filters: sender substring or pattern, subject,
recipient domain, rule, date range; a full address as sender still matches exactly."""

from __future__ import annotations

import dataclasses
import json
from calendar import timegm
from collections.abc import AsyncIterator
from pathlib import Path
from time import strptime

import pytest

from relay.quarantine.store import QuarantineStore
from tests.helpers.admin import Env, admin_env, basic, new_message
from tests.integration.test_admin_cli import Cli, cli  # noqa: F401  (the fixture)

COM = ("trainee1@example.com", "trainee2@mail.example.com")
NET = ("guest1@example.net", "guest2@example.net")


def _day(text: str) -> float:
    return float(timegm(strptime(text, "%Y-%m-%d"))) + 12 * 3600


async def _fill(store: QuarantineStore) -> dict[str, str]:
    """Four held messages; returns sender name → id."""
    rows = {
        "alice": ("alice@example.org", "Invoice March", COM, "bulk-external", "2026-11-10"),
        "malice": ("malice@example.org", "Invoice April", COM, "bulk-external", "2026-11-20"),
        "bob": ("bob@example.net", "Holiday plans", NET, "huge", "2026-11-21"),
        "carol": ("carol@sales.example.org", "Team lunch", COM, "bulk-external", "2026-11-22"),
    }
    ids = {}
    for name, (sender, subject, external, rule, day) in rows.items():
        msg = new_message(subject, external=external, rule=rule, received_at=_day(day))
        ids[name] = await store.put(dataclasses.replace(msg, mail_from=sender))
    return ids


# The same address in other letter case (built, so fixtures spell domains in lower case).
_ALICE_CASED = "ALICE@" + "example.org".capitalize()

#: (query string, CLI flags, who matches)
CASES = [
    ("sender=alice@example.org", ["--sender", "alice@example.org"], {"alice"}),
    (f"sender={_ALICE_CASED}", ["--sender", _ALICE_CASED], {"alice"}),
    ("sender=alice", ["--sender", "alice"], {"alice", "malice"}),
    ("sender=*@example.org", ["--sender", "*@example.org"], {"alice", "malice"}),
    ("sender=*example.org", ["--sender", "*example.org"], {"alice", "malice", "carol"}),
    ("subject=invoice", ["--subject", "invoice"], {"alice", "malice"}),
    ("rcpt_domain=example.net", ["--rcpt-domain", "example.net"], {"bob"}),
    ("rcpt_domain=*.example.com", ["--rcpt-domain", "*.example.com"], {"alice", "malice", "carol"}),
    ("rule=huge", ["--rule", "huge"], {"bob"}),
    ("since=2026-11-20", ["--since", "2026-11-20"], {"malice", "bob", "carol"}),
    ("until=2026-11-20", ["--until", "2026-11-20"], {"alice", "malice"}),
    (
        "sender=*@example.org&subject=invoice&since=2026-11-15",
        ["--sender", "*@example.org", "--subject", "invoice", "--since", "2026-11-15"],
        {"malice"},
    ),
]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with admin_env(tmp_path) as running:
        yield running


# An address in the query string reaches the access log; the safety net hides it
# (test_uvicorn_access_and_error_logs_are_json_without_addresses checks that).
@pytest.mark.logs_may_contain_addresses
async def test_api_list_takes_the_search_filters(env: Env) -> None:
    ids = await _fill(env.store)
    names = {v: k for k, v in ids.items()}
    for query, _, expected in CASES:
        resp = await env.client.get(f"/api/quarantine?{query}", headers=basic())
        assert resp.status_code == 200, (query, resp.text)
        body = resp.json()
        assert {names[i["id"]] for i in body["items"]} == expected, query
        assert body["total"] == len(expected), query
    paged = (await env.client.get("/api/quarantine?limit=1&offset=1", headers=basic())).json()
    assert (paged["total"], paged["has_more"], paged["items"][0]["id"]) == (4, True, ids["bob"])
    for bad in ("since=yesterday", "until=soon", "status=gone"):
        resp = await env.client.get(f"/api/quarantine?{bad}", headers=basic())
        assert resp.status_code == 400 and resp.json()["error"] == "bad_request", bad
        assert bad.split("=")[0] in resp.json()["message"], bad


async def test_cli_list_takes_the_search_filters(cli: Cli) -> None:
    ids = await _fill(cli.store)
    names = {v: k for k, v in ids.items()}
    for _, flags, expected in CASES:
        code, out, err = await cli.run("quarantine", "list", "--json", *flags)
        assert code == 0, (flags, err)
        assert {names[m["id"]] for m in json.loads(out)} == expected, flags
    code, out, _ = await cli.run("quarantine", "list", "--subject", "holiday")
    assert out.splitlines()[-1] == "1 of 1 message(s)" and "bob@example.net" in out
    code, _, err = await cli.run("quarantine", "list", "--since", "last tuesday")
    assert code == 2 and "since" in err and "not a time" in err
