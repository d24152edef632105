"""Releasing held messages: never twice, never silently dropping a recipient.

Real uvicorn + httpx, real SQLite file, real aiosmtpd upstream, the CLI as a
subprocess on the same database.
"""

from __future__ import annotations

import asyncio
import getpass
import re
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relay.actions.release import QuarantineReleaser
from relay.inspect.domains import DomainMatcher
from relay.settings import UpstreamSettings
from relay.upstream import UpstreamClient
from tests.helpers.admin import (
    EXTERNAL_RCPTS,
    INTERNAL_RCPTS,
    PASSWORD,
    Env,
    admin_env,
    audit_of,
    basic,
    new_message,
    write_config,
)
from tests.helpers.waiting import Gate, wait_until

ROOT = Path(__file__).resolve().parents[2]
CLI_ACTOR = f"cli:{getpass.getuser()}"
ALL = (*INTERNAL_RCPTS, *EXTERNAL_RCPTS)
BUSY, LATER, UNKNOWN = EXTERNAL_RCPTS[0], EXTERNAL_RCPTS[1], EXTERNAL_RCPTS[2]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with admin_env(tmp_path) as running:
        yield running


async def _cli(env: Env, tmp_path: Path, *args: str) -> tuple[int, str, str]:
    config = write_config(
        tmp_path / "ccguard.toml",
        db=tmp_path / "q.db",
        users=tmp_path / "users.json",
        upstream_port=env.upstream.port,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "quarantine", *args, "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _release(env: Env, msg_id: str, mode: str = "as-is") -> httpx.Response:
    return await env.client.post(
        f"/api/quarantine/{msg_id}/release", json={"mode": mode}, headers=basic(), timeout=30
    )


async def _details(env: Env, msg_id: str) -> list[str]:
    return [e.detail for e in reversed(await env.store.list_audit(target=msg_id))]


def _no_addresses(texts: list[str]) -> None:
    for text in texts:
        assert "@" not in text, text


async def _status(env: Env, msg_id: str) -> str:
    stored = await env.store.get(msg_id)
    assert stored is not None
    return stored.status


# -- never twice ------------------------------------------------------------


async def test_web_and_cli_releasing_at_once_deliver_exactly_once(env: Env, tmp_path: Path) -> None:
    msg_id = await env.store.put(new_message())
    gate = Gate()  # the API's delivery is still under way when the CLI tries
    env.upstream.data_gate = gate.hold
    api = asyncio.create_task(_release(env, msg_id, "hidden"))
    await wait_until(lambda: gate.waiting == 1, "the API's release is in DATA")
    code, _, err = await _cli(env, tmp_path, "release", msg_id)
    assert gate.waiting == 1 and env.upstream.data_started == 1  # the CLI sent nothing
    gate.open()
    resp = await api
    assert len(env.upstream.messages) == 1, "delivered twice"
    assert code == 1 and "being released by alice" in err
    assert resp.status_code == 200 and resp.json()["status"] == "released"
    assert await audit_of(env, msg_id) == [
        (CLI_ACTOR, "release", "conflict"),
        ("alice", "release", "ok"),
    ]


async def test_two_api_releases_at_once_one_gets_409_being_released(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    gate = Gate()  # the first release is in DATA when the second one comes
    env.upstream.data_gate = gate.hold
    first_task = asyncio.create_task(_release(env, msg_id))
    await wait_until(lambda: gate.waiting == 1, "the first release is in DATA")
    second = await _release(env, msg_id, "hidden")
    gate.open()
    first = await first_task
    assert (first.status_code, second.status_code) == (200, 409)
    conflict = second
    assert conflict.json()["claimed_by"] == "alice"
    assert "being released by alice" in conflict.json()["message"]
    assert len(env.upstream.messages) == 1


async def test_delete_during_a_release_is_refused(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    gate = Gate()  # the release is in DATA while the delete comes
    env.upstream.data_gate = gate.hold
    api = asyncio.create_task(_release(env, msg_id))
    await wait_until(lambda: gate.waiting == 1, "the release is in DATA")
    resp = await env.client.post(f"/api/quarantine/{msg_id}/delete", json={}, headers=basic())
    gate.open()
    assert resp.status_code == 409 and resp.json()["claimed_by"] == "alice"
    assert (await api).status_code == 200
    assert await _status(env, msg_id) == "released"


def _fail_marking_released(db: Path, *, on: bool) -> None:
    """A real SQLite failure in mark_released only (a trigger), like a full disk at that moment."""
    conn = sqlite3.connect(db, isolation_level=None)
    if on:
        conn.execute(
            "CREATE TRIGGER fail_release BEFORE UPDATE OF status ON messages "
            "WHEN NEW.status = 'released' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    else:
        conn.execute("DROP TRIGGER fail_release")
    conn.close()


async def test_store_failure_after_delivery_is_audited_and_never_delivers_again(
    env: Env, tmp_path: Path
) -> None:
    msg_id = await env.store.put(new_message())
    _fail_marking_released(tmp_path / "q.db", on=True)
    resp = await _release(env, msg_id)
    assert resp.status_code == 503
    assert len(env.upstream.messages) == 1
    assert await _status(env, msg_id) == "held"
    assert await audit_of(env, msg_id) == [("alice", "release", "store_failed")]

    _fail_marking_released(tmp_path / "q.db", on=False)
    resp = await _release(env, msg_id)  # at once: the failed attempt gave its claim back
    assert resp.status_code == 200
    assert resp.json()["upstream_reply"] is None and resp.json()["delivered"] == len(ALL)
    assert len(env.upstream.messages) == 1, "everybody already had it"
    assert await _status(env, msg_id) == "released"
    assert (await audit_of(env, msg_id))[-1] == ("alice", "release", "ok")


# -- never silently dropping a recipient ------------------------------------


async def test_deferred_recipients_keep_it_held_and_a_retry_delivers_only_to_them(
    env: Env,
) -> None:
    msg_id = await env.store.put(new_message())
    env.upstream.refuse_rcpt = {BUSY: "450 4.2.1 mailbox busy", LATER: "451 4.3.0 try later"}
    resp = await _release(env, msg_id, "hidden")
    assert resp.status_code == 502
    body = resp.json()
    assert body["error"] == "recipients_deferred"
    assert body["message"] == (
        "still held: 2 recipient(s) deferred, the others were delivered; "
        "release again to retry them"
    )
    assert (body["delivered"], body["recipients"]) == (len(ALL) - 2, len(ALL))
    assert {d["rcpt"] for d in body["deferred"]} == {BUSY, LATER}
    [first] = env.upstream.messages
    assert sorted(first.rcpt_tos) == sorted(set(ALL) - {BUSY, LATER})
    assert await _status(env, msg_id) == "held"

    env.upstream.refuse_rcpt = {}
    resp = await _release(env, msg_id, "hidden")
    assert resp.status_code == 200 and resp.json()["status"] == "released"
    assert resp.json()["delivered"] == len(ALL)
    second = env.upstream.messages[1]
    assert sorted(second.rcpt_tos) == sorted([BUSY, LATER])
    assert await audit_of(env, msg_id) == [
        ("alice", "release", "deferred"),
        ("alice", "release", "ok"),
    ]
    details = await _details(env, msg_id)
    assert "deferred=2 (450 4.2.1,451 4.3.0)" in details[0]
    assert f"delivered={len(ALL) - 2}/{len(ALL)}" in details[0]
    _no_addresses(details)
    _no_addresses([repr(kw) for _, kw in env.log.events])


async def test_permanent_refusals_are_reported_and_the_release_completes(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    env.upstream.refuse_rcpt = {UNKNOWN: "550 5.1.1 no such user"}
    resp = await _release(env, msg_id)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "released"
    assert body["refused"] == [{"rcpt": UNKNOWN, "reply": "550 5.1.1 no such user"}]
    assert body["deferred"] == [] and body["delivered"] == len(ALL) - 1
    [detail] = await _details(env, msg_id)
    assert "refused=1 (550 5.1.1)" in detail
    _no_addresses([detail])


async def test_mixed_refusals_retry_only_the_deferred_and_remember_the_refused(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    env.upstream.refuse_rcpt = {BUSY: "452 4.2.2 over quota", UNKNOWN: "550 5.1.1 no such user"}
    resp = await _release(env, msg_id)
    assert resp.status_code == 502
    assert "2 recipient" not in resp.json()["message"]
    assert resp.json()["message"].startswith("still held: 1 recipient(s) deferred, 1 refused")
    env.upstream.refuse_rcpt = {}
    resp = await _release(env, msg_id)
    assert resp.status_code == 200
    assert resp.json()["refused"] == [{"rcpt": UNKNOWN, "reply": None}]
    assert env.upstream.messages[1].rcpt_tos == [BUSY]  # the refused one is not tried again


async def test_every_recipient_refused_for_good_keeps_it_held(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    env.upstream.refuse_rcpt = dict.fromkeys(ALL, "550 5.7.1 relaying denied")
    resp = await _release(env, msg_id)
    assert resp.status_code == 502 and resp.json()["error"] == "upstream_failed"
    assert env.upstream.messages == []
    assert await _status(env, msg_id) == "held"
    env.upstream.refuse_rcpt = {}
    assert (await _release(env, msg_id)).status_code == 200
    assert len(env.upstream.messages[0].rcpt_tos) == len(ALL)


# -- the web page and the CLI say what happened ------------------------------

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def _logged_in(env: Env) -> str:
    page = await env.client.get("/login")
    token = CSRF.search(page.text)
    assert token
    form = {"username": "alice", "password": PASSWORD, "csrf_token": token.group(1)}
    assert (await env.client.post("/login", data=form)).status_code == 303
    return token.group(1)


async def _web_release(env: Env, msg_id: str) -> httpx.Response:
    page = await env.client.get(f"/quarantine/{msg_id}")
    token = CSRF.search(page.text)
    assert token
    form: dict[str, Any] = {"csrf_token": token.group(1), "mode": "as-is"}
    return await env.client.post(f"/quarantine/{msg_id}/release", data=form)


async def test_web_page_says_still_held_and_lists_refused_recipients(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    env.upstream.refuse_rcpt = {BUSY: "450 4.2.1 mailbox busy", UNKNOWN: "550 5.1.1 no user"}
    await _logged_in(env)
    resp = await _web_release(env, msg_id)
    assert resp.status_code == 502
    assert (
        "Still held: 1 recipient(s) deferred, 1 refused for good, the others were delivered; "
        "release again to retry them." in resp.text
    )
    assert f"Already delivered to {len(ALL) - 2} of {len(ALL)} recipients" in resp.text
    env.upstream.refuse_rcpt = {}
    resp = await _web_release(env, msg_id)
    assert resp.status_code == 303
    assert resp.headers["location"].endswith("notice=released-refused")
    page = await env.client.get(resp.headers["location"])
    assert "the upstream refused some recipients for good" in page.text
    assert f"Delivered to {len(ALL) - 1} of {len(ALL)} recipients." in page.text
    refused = page.text.split("Refused for good by the upstream")[1].split("</ul>")[0]
    assert UNKNOWN in refused and BUSY not in refused


async def test_cli_release_with_deferred_recipient_exits_1_then_finishes(
    env: Env, tmp_path: Path
) -> None:
    msg_id = await env.store.put(new_message())
    env.upstream.refuse_rcpt = {LATER: "451 4.3.0 try later"}
    code, _, err = await _cli(env, tmp_path, "release", msg_id)
    assert code == 1
    assert "still held: 1 recipient(s) deferred, the others were delivered" in err
    assert f"deferred: {LATER} (451 4.3.0 try later)" in err
    env.upstream.refuse_rcpt = {UNKNOWN: "550 5.1.1 no user"}  # too late: it already has it
    code, out, _ = await _cli(env, tmp_path, "release", msg_id)
    assert code == 0 and "released" in out and "refused" not in out
    assert env.upstream.messages[1].rcpt_tos == [LATER]
    assert [r for _, _, r in await audit_of(env, msg_id)] == ["deferred", "ok"]


class _Events:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(f"{event} {kw}")

    warning = info


async def test_releaser_logs_refused_recipients_without_their_addresses(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    stored = await env.store.get(msg_id)
    assert stored is not None
    env.upstream.refuse_rcpt = {BUSY: "450 4.2.1 busy", UNKNOWN: "550 5.1.1 no user"}
    client = UpstreamClient(
        UpstreamSettings(host="127.0.0.1", port=env.upstream.port, starttls="off"),
        local_hostname="ccguard.example.org",
    )
    events = _Events()
    try:
        matcher = DomainMatcher(["example.org"])
        releaser = QuarantineReleaser(client, matcher, log=events)  # type: ignore[arg-type]
        attempt = await releaser.release(stored, "as-is")
    finally:
        await client.close()
    assert set(attempt.deferred) == {BUSY} and set(attempt.refused) == {UNKNOWN}
    assert len(attempt.delivered) == len(ALL) - 2
    assert any("release_recipient_refused" in line for line in events.lines)
    for line in events.lines:
        assert BUSY not in line and UNKNOWN not in line
