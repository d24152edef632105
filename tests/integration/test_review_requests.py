"""Release requests on a real relay: the sender asks from the notice's link, reviewers
approve or deny over the API (two accounts, four eyes), the sender gets the decision."""

from __future__ import annotations

import email
import email.policy
import re

import httpx

from relay.credentials.users import UserDB
from relay.quarantine import HELD, RELEASED
from relay.settings import Settings
from tests.helpers.admin import EXTERNAL_RCPTS, INTERNAL_RCPTS, PASSWORD, basic
from tests.helpers.relay import running_relay
from tests.helpers.selfservice import (
    SENDER,
    body_of,
    held_rules,
    notice_link,
    notices_to_sender,
    review_settings,
    send_held,
)
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import wait_until

JSON = {"Content-Type": "application/json"}


def _settings(upstream: RecordingUpstream, four_eyes: bool) -> Settings:
    settings = review_settings(upstream.port, rules=held_rules(four_eyes=four_eyes))
    users = UserDB(settings.admin.users_file)
    users.set_password("alice", PASSWORD)
    users.set_password("bob", PASSWORD)
    return settings


def _as_sent(upstream: RecordingUpstream) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(m.data, policy=email.policy.default)  # type: ignore[misc]
        for m in upstream.messages
        if m.mail_from == SENDER
    ]


async def _decision(upstream: RecordingUpstream, count: int) -> str:
    await wait_until(lambda: len(notices_to_sender(upstream)) >= count, "decision mail", 10)
    notice = notices_to_sender(upstream)[count - 1]
    assert b"X-CCGuard-Notice: decision" in notice.data
    return body_of(notice)


async def test_request_needs_two_reviewers_and_never_the_requester(
    upstream: RecordingUpstream,
) -> None:
    settings = _settings(upstream, four_eyes=True)
    async with running_relay(settings) as relay, httpx.AsyncClient() as http:
        api = f"http://127.0.0.1:{relay.http_port('admin')}/api"
        mid = await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        page = await http.get(link)
        assert (
            "Ask for it to be sent as written" in page.text and "(two, for this rule)" in page.text
        )
        empty = await http.post(link, data={"choice": "request", "justification": "  "})
        assert empty.status_code == 400 and "say why" in empty.text.lower()
        made = await http.post(
            link, data={"choice": "request", "justification": "The list is our public board"}
        )
        assert made.status_code == 200 and "sent to the reviewers" in made.text

        direct = await http.post(f"{api}/quarantine/{mid}/release", json={"mode": "as-is"},
                                 headers=basic("alice"))  # fmt: skip
        assert direct.status_code == 403 and direct.json()["error"] == "four_eyes"

        listed = (await http.get(f"{api}/requests?status=pending", headers=basic("bob"))).json()
        (req,) = listed["items"]
        assert (req["message_id"], req["justification"]) == (mid, "The list is our public board")
        assert req["requester"].startswith("sender:") and SENDER not in req["requester"]
        assert req["approvals_needed"] == 2
        url = f"{api}/requests/{req['id']}"

        one = await http.post(f"{url}/approve", json={"comment": "fine"}, headers=basic("alice"))
        assert one.status_code == 200 and one.json()["status"] == "pending"
        assert one.json()["delivered"] is None and _as_sent(upstream) == []
        twice = await http.post(f"{url}/approve", json={}, headers=basic("alice"))
        assert twice.status_code == 403 and twice.json()["error"] == "four_eyes"
        assert "second, different reviewer" in twice.json()["message"]

        two = await http.post(f"{url}/approve", json={"comment": "ok"}, headers=basic("bob"))
        assert two.status_code == 200, two.text
        body = two.json()
        assert body["status"] == "approved" and body["delivered"] == len(
            {*INTERNAL_RCPTS, *EXTERNAL_RCPTS}
        )
        assert [a["reviewer"] for a in body["approvals"]] == ["alice", "bob"]
        (sent,) = _as_sent(upstream)
        assert "trainee0@example.com" in str(sent["Cc"])  # as written: nothing hidden
        stored = await relay.store.get(mid)
        assert stored is not None and (stored.status, stored.released_by) == (RELEASED, "bob")
        text = await _decision(upstream, 2)
        assert "was approved" in text and "delivered as you wrote it" in text

        audit = [(e.actor, e.action, e.result) for e in await relay.store.list_audit(100, mid)]
        assert ("alice", "approve", "ok") in audit and ("alice", "approve", "refused") in audit
        assert ("bob", "approve", "ok") in audit and ("bob", "release", "ok") in audit
        assert ("alice", "release", "refused") in audit  # the direct as-sent release


async def test_a_reviewer_cannot_approve_her_own_request(upstream: RecordingUpstream) -> None:
    async with running_relay(_settings(upstream, four_eyes=False)) as relay:
        api = f"http://127.0.0.1:{relay.http_port('admin')}/api"
        mid = await send_held(relay.smtp_port)
        async with httpx.AsyncClient() as http:
            made = await http.post(f"{api}/quarantine/{mid}/request", headers=basic("alice"),
                                   json={"justification": "the board wants it"})  # fmt: skip
            assert made.status_code == 201 and made.json()["approvals_needed"] == 1
            url = f"{api}/requests/{made.json()['id']}"
            own = await http.post(f"{url}/approve", json={}, headers=basic("alice"))
            assert own.status_code == 403 and "you made this request" in own.json()["message"]
            assert _as_sent(upstream) == []
            other = await http.post(f"{url}/approve", json={}, headers=basic("bob"))
            assert other.status_code == 200 and other.json()["status"] == "approved"
        assert len(_as_sent(upstream)) == 1
        assert len(notices_to_sender(upstream)) == 1  # a reviewer's request: no decision mail


async def test_deny_keeps_it_held_and_tells_the_sender(upstream: RecordingUpstream) -> None:
    async with running_relay(_settings(upstream, four_eyes=False)) as relay:
        api = f"http://127.0.0.1:{relay.http_port('admin')}/api"
        mid = await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        async with httpx.AsyncClient() as http:
            await http.post(link, data={"choice": "request", "justification": "urgent"})
            (req,) = (await http.get(f"{api}/requests", headers=basic("bob"))).json()["items"]
            denied = await http.post(f"{api}/requests/{req['id']}/deny", headers=basic("bob"),
                                     json={"comment": "Use Bcc for trainees"})  # fmt: skip
            assert denied.status_code == 200 and denied.json()["status"] == "denied"
            late = await http.post(f"{api}/requests/{req['id']}/approve", json={},
                                   headers=basic("alice"))  # fmt: skip
            assert late.status_code == 409
            text = await _decision(upstream, 2)
            assert "was denied" in text and "Use Bcc for trainees" in text and "by bob" in text
            stored = await relay.store.get(mid)
            assert stored is not None and stored.status == HELD
            assert _as_sent(upstream) == []
            fresh = re.search(r"(http://\S+/r/\S+)", text)  # the sender may still decide
            assert fresh is not None and fresh.group(1) != link
            hidden = await http.post(fresh.group(1), data={"choice": "hidden"})
            assert hidden.status_code == 200 and len(_as_sent(upstream)) == 1


async def test_approved_but_upstream_down_stays_held_and_can_be_released_later(
    upstream: RecordingUpstream,
) -> None:
    async with running_relay(_settings(upstream, four_eyes=True)) as relay:
        api = f"http://127.0.0.1:{relay.http_port('admin')}/api"
        mid = await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        async with httpx.AsyncClient() as http:
            await http.post(link, data={"choice": "request", "justification": "urgent"})
            (req,) = (await http.get(f"{api}/requests", headers=basic("bob"))).json()["items"]
            await http.post(f"{api}/requests/{req['id']}/approve", json={}, headers=basic("bob"))
            upstream.data_hook = lambda envelope: "451 4.3.0 try later"
            failed = await http.post(f"{api}/requests/{req['id']}/approve", json={},
                                     headers=basic("alice"))  # fmt: skip
            assert failed.status_code == 502 and failed.json()["error"] == "upstream_failed"
            stored = await relay.store.get(mid)
            assert stored is not None and stored.status == HELD
            upstream.data_hook = None
            again = await http.post(f"{api}/quarantine/{mid}/release", json={"mode": "as-is"},
                                    headers=basic("bob"))  # fmt: skip
            assert again.status_code == 200, again.text  # the approved request allows it
        assert len(_as_sent(upstream)) == 1
