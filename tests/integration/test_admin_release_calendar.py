"""A held calendar invitation cannot be released "recipients hidden".

Hiding the recipients rewrites header fields only; the invitation's ATTENDEE
lines would still reach every recipient.  So web, API and CLI refuse such a
release (nothing delivered, still held, audited) and the reviewer has to
choose "as sent" deliberately.  Real uvicorn + httpx, real SQLite, real
aiosmtpd upstream, the CLI as a subprocess; the stored exposure comes from the
real inspector, as the relay stores it.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.inspect import DomainMatcher, inspect_message
from relay.quarantine.store import NewMessage
from tests.helpers.admin import PASSWORD, Env, admin_env, audit_of, basic, write_config
from tests.helpers.calendar import attendee_lines, ics, invitation, multipart, part
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream

ROOT = Path(__file__).resolve().parents[2]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
GUESTS = tuple(f"guest{i:03d}@example.com" for i in range(12))


def _held_invitation(attendee_count: int = 12) -> NewMessage:
    alternative = multipart(
        "alternative",
        "alt-boundary",
        [
            part("You are invited.", "text/plain; charset=UTF-8"),
            part(ics(attendee_lines(attendee_count)), encoding="base64"),
        ],
    )
    raw = invitation(alternative, to="Alice <alice@example.org>")
    exposure = inspect_message(raw, DomainMatcher(("example.org",)), max_header_bytes=1 << 20)
    assert exposure.calendar_attendees_external == attendee_count  # what the relay would store
    return NewMessage(
        mail_from="alice@example.org",
        rcpt_tos=("alice@example.org", *GUESTS),
        message=raw,
        client_ip="127.0.0.1",
        client_helo="app.example.org",
        queue_id="Q1",
        rule="hide",
        reason="rewrite cannot hide calendar attendees, quarantine instead",
        exposure=exposure.counts(),
    )


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with admin_env(tmp_path) as running:
        yield running


async def _still_held(env: Env, msg_id: str) -> None:
    stored = await env.store.get(msg_id)
    assert stored is not None and stored.status == "held" and stored.claimed_by is None
    assert env.upstream.messages == [], "something was delivered"


async def test_api_hidden_release_of_an_invitation_is_409_and_as_is_still_works(env: Env) -> None:
    msg_id = await env.store.put(_held_invitation())
    resp = await env.client.post(
        f"/api/quarantine/{msg_id}/release", json={"mode": "hidden"}, headers=basic(), timeout=30
    )
    assert resp.status_code == 409, resp.text
    body = resp.json()
    assert body["error"] == "calendar_attendees_visible"
    assert body["attendees_external"] == 12 and body["status"] == "held"
    assert "cannot hide its attendee list" in body["message"]
    await _still_held(env, msg_id)
    entries = await env.store.list_audit(target=msg_id)
    assert [(e.actor, e.action, e.result) for e in entries] == [("alice", "release", "refused")]
    assert "calendar_attendees_visible" in entries[0].detail and "@" not in entries[0].detail
    # The reviewer chooses "as sent" deliberately: that is delivered, attendees and all.
    resp = await env.client.post(
        f"/api/quarantine/{msg_id}/release", json={"mode": "as-is"}, headers=basic(), timeout=30
    )
    assert resp.status_code == 200 and resp.json()["status"] == "released"
    assert len(env.upstream.messages) == 1


async def test_cli_release_hidden_of_an_invitation_exits_2_and_delivers_nothing(
    env: Env, tmp_path: Path
) -> None:
    msg_id = await env.store.put(_held_invitation())
    config = write_config(
        tmp_path / "ccguard.toml",
        db=tmp_path / "q.db",
        users=tmp_path / "users.json",
        upstream_port=env.upstream.port,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "quarantine", "release", "--hidden", msg_id,
        "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, (out, err)
    assert b"released" not in out
    assert b"calendar invitation showing 12 external attendee(s)" in err
    assert b"Release it as sent (as-is) only if" in err
    await _still_held(env, msg_id)
    assert [r for _, _, r in await audit_of(env, msg_id)] == ["refused"]


async def test_web_hidden_release_of_an_invitation_says_why_and_releases_nothing(
    env: Env,
) -> None:
    msg_id = await env.store.put(_held_invitation())
    page = await env.client.get("/login")
    token = CSRF.search(page.text)
    assert token
    form = {"username": "alice", "password": PASSWORD, "csrf_token": token.group(1)}
    assert (await env.client.post("/login", data=form)).status_code == 303
    page = await env.client.get(f"/quarantine/{msg_id}")
    token = CSRF.search(page.text)
    assert token
    resp = await env.client.post(
        f"/quarantine/{msg_id}/release", data={"csrf_token": token.group(1), "mode": "hidden"}
    )
    assert resp.status_code == 409
    assert "hiding the recipients cannot hide its attendee list (12 external attendees)" in (
        resp.text
    )
    assert "Every recipient would still see every attendee." in resp.text
    await _still_held(env, msg_id)


async def test_an_invitation_held_by_the_live_relay_is_not_released_hidden_by_the_cli(
    upstream: RecordingUpstream, tmp_path: Path
) -> None:
    # The whole path: the relay holds the invitation (a rewrite rule cannot hide
    # attendees), then `ccguard quarantine release --hidden` on its database.
    policy = {"rules": [{"name": "hide", "min_visible_external": 3, "action": "rewrite"}]}
    settings = settings_for(upstream.port, policy=policy)
    raw = _held_invitation().message
    async with running_relay(settings) as relay:
        code, text = await asyncio.to_thread(_send, relay.smtp_port, raw)
    assert code == 250 and text.startswith(b"2.0.0 held for review as "), text
    held_id = text.decode().rsplit(" ", 1)[1]
    config = write_config(
        tmp_path / "ccguard.toml",
        db=Path(settings.quarantine.database),
        users=tmp_path / "users.json",
        upstream_port=upstream.port,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", "quarantine", "release", "--hidden", held_id,
        "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, (out, err)
    assert b"12 external attendee(s)" in err
    assert upstream.messages == []  # neither live nor released


def _send(port: int, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        for rcpt in GUESTS:
            client.rcpt(rcpt)
        return client.data(data)
