"""Self-service links that must not work: forged, another message's, expired, used, made
with another key; each refused with a clear page, audited, counted and throttled, and
the page never shows another message."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from relay.admin.sessions import load_session_key
from relay.quarantine import HELD
from relay.review.tokens import TokenSigner
from tests.helpers.relay import running_relay
from tests.helpers.selfservice import SENDER, notice_link, review_settings, send_held
from tests.helpers.upstream import RecordingUpstream


async def _refusals(relay: object, target: str) -> list[str]:
    store = relay.store  # type: ignore[attr-defined]
    return [e.detail.split()[0] for e in await store.list_audit(100, target)
            if e.action == "self_service_link" and e.result == "refused"]  # fmt: skip


async def test_bad_links_are_refused_audited_and_show_nothing(
    upstream: RecordingUpstream, tmp_path: Path
) -> None:
    settings = review_settings(upstream.port, max_refusals=20)
    async with running_relay(settings) as relay, httpx.AsyncClient() as http:
        first = await send_held(relay.smtp_port, "First held message")
        link_a = await notice_link(upstream, 1)
        second = await send_held(relay.smtp_port, "Second held message")
        link_b = await notice_link(upstream, 2)
        base = settings.review.public_url + "/r/"
        token_a = link_a.removeprefix(base)

        forged = token_a[:-2] + ("AA" if not token_a.endswith("AA") else "BB")
        other_id = second + token_a[len(first) :]  # B's id with A's signature
        key = load_session_key(settings.review.token_key_file)
        expired = TokenSigner(key, 3600, clock=lambda: time.time() - 7200).make(first, SENDER)
        wrong_key = TokenSigner("k" * 48, 3600).make(first, SENDER)
        wrong_sender = TokenSigner(key, 3600).make(first, "someone@example.org")
        cases = {
            "forged": (forged, 403, "not valid"),
            "other message": (other_id, 403, "not valid"),
            "expired": (expired, 410, "expired"),
            "wrong key": (wrong_key, 403, "not valid"),
            "wrong sender": (wrong_sender, 403, "not valid"),
            "garbage": ("not-a-token", 403, "not valid"),
        }
        for name, (token, status, words) in cases.items():
            for method in ("GET", "POST"):
                resp = await http.request(method, base + token, data={"choice": "hidden"})
                assert resp.status_code == status, (name, method, resp.text)
                assert words in resp.text, name
                assert "First held message" not in resp.text and "Second" not in resp.text
                assert "trainee0@example.com" not in resp.text

        assert (await http.post(link_a, data={"choice": "withdraw"})).status_code == 200
        used = await http.get(link_a)
        assert used.status_code == 410 and "already used" in used.text

        assert sorted(await _refusals(relay, first)) == sorted(
            ["reason=forged"] * 2 * 3 + ["reason=expired"] * 2 + ["reason=used"]
        )  # forged, wrong key, wrong sender: GET and POST each; B's id is audited under B
        assert await _refusals(relay, second) == ["reason=forged"] * 2
        stored_b = await relay.store.get(second)
        assert stored_b is not None and stored_b.status == HELD  # B untouched
        assert [m for m in upstream.messages if m.mail_from == SENDER] == []
        assert (await http.get(link_b)).status_code == 200  # B's own link still works


async def test_too_many_bad_links_are_throttled(upstream: RecordingUpstream) -> None:
    settings = review_settings(upstream.port, max_refusals=3)
    async with running_relay(settings) as relay, httpx.AsyncClient() as http:
        await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        bad = link[:-3] + "xyz"
        statuses = [(await http.get(bad)).status_code for _ in range(5)]
        assert statuses == [403, 403, 403, 429, 429]  # 3 free refusals, then a wait
        waited = await http.get(link)  # even a good link waits while the client is throttled
        assert waited.status_code == 429 and "Try again in" in waited.text
        metrics = (await http.get(f"http://127.0.0.1:{relay.http_port('admin')}/metrics")).text
        assert 'ccguard_self_service_total{action="throttled"}' in metrics
        assert 'ccguard_self_service_total{action="throttled"} 0.0' not in metrics
