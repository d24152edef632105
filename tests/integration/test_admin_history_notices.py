"""The sender notice for a held message shows in its history: a real relay holds a
message sent by a real SMTP client, the notice reaches (or is refused by) a recording
upstream, and the detail page and ``GET /api/audit?target=ID`` show one entry for it."""

from __future__ import annotations

import re
from typing import Any

import httpx

from relay.credentials.users import UserDB
from tests.helpers.admin import PASSWORD, basic
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.selfservice import SENDER, held_rules, notices_to_sender, send_held
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import wait_until


def _settings(upstream_port: int) -> Any:
    settings = settings_for(
        upstream_port,
        policy={"rules": held_rules()},
        notifications={"enabled": True, "from": "ccguard@example.org"},
    )
    UserDB(settings.admin.users_file).set_password("alice", PASSWORD)
    return settings


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def _login(http: httpx.AsyncClient) -> None:
    page = await http.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    form = {"username": "alice", "password": PASSWORD, "csrf_token": csrf.group(1)}
    assert (await http.post("/login", data=form)).status_code == 303


async def test_held_message_history_shows_the_notice_sent(upstream: RecordingUpstream) -> None:
    async with running_relay(_settings(upstream.port)) as relay:
        mid = await send_held(relay.smtp_port)
        await wait_until(lambda: len(notices_to_sender(upstream)) == 1, "the notice")
        await wait_until(lambda: relay.dispatcher.notices.pending == 0, "the notice finished")
        base = f"http://127.0.0.1:{relay.http_port('admin')}"
        async with httpx.AsyncClient(base_url=base) as http:
            resp = await http.get(f"/api/audit?target={mid}", headers=basic())
            assert resp.status_code == 200, resp.text
            items = resp.json()["items"]
            notices = [e for e in items if e["action"] == "notice"]
            assert [(e["actor"], e["result"], e["detail"]) for e in notices] == [
                ("ccguard", "sent", "to=sender")
            ]
            assert SENDER not in resp.text  # no address in the audit trail
            await _login(http)
            page = await http.get(f"/quarantine/{mid}")
            assert page.status_code == 200
            history = _text(page.text.split('id="history"', 1)[1].split("</section>", 1)[0])
            assert "ccguard notice sent to=sender" in history


async def test_a_refused_notice_is_recorded_as_failed(upstream: RecordingUpstream) -> None:
    def refuse_notices(envelope: Any) -> str | None:
        return "550 5.1.1 mailbox unavailable" if envelope.mail_from in ("", "<>") else None

    upstream.data_hook = refuse_notices
    async with running_relay(_settings(upstream.port)) as relay:
        mid = await send_held(relay.smtp_port)
        await wait_until(lambda: relay.dispatcher.notices.pending == 0, "the notice finished")
        audit = [(e.actor, e.action, e.result) for e in await relay.store.list_audit(50, mid)]
        assert audit == [("ccguard", "notice", "failed")]
        assert notices_to_sender(upstream) == []
