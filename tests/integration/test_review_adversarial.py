"""An attacker's and a mail engineer's look at sender self-service (review 14): the
link is a credential and must not end up in the logs; a mangled link gets the clear
refusal page (audited, throttled), never a server error; a four-eyes rule cannot be
released as sent by its undo hold or its sender's "Send now"."""

from __future__ import annotations

import asyncio
import re
import smtplib
from pathlib import Path

import httpx
import pytest

from relay.credentials.users import UserDB
from tests.helpers.admin import EXTERNAL_RCPTS, INTERNAL_RCPTS, PASSWORD, basic
from tests.helpers.calendar import attendee_lines, ics, invitation, part
from tests.helpers.observability import captured_logging, json_lines
from tests.helpers.process import run_ccguard
from tests.helpers.quarantine_store import Clock
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

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def test_the_link_never_appears_in_the_access_log(upstream: RecordingUpstream) -> None:
    settings = review_settings(upstream.port)
    with captured_logging(hash_key="k") as out:
        async with running_relay(settings) as relay, httpx.AsyncClient() as http:
            await send_held(relay.smtp_port)
            link = await notice_link(upstream)
            token = link.rsplit("/r/", 1)[1]
            assert (await http.get(link)).status_code == 200
            assert (await http.get(link + "x")).status_code == 403
    lines = json_lines(out.getvalue())
    access = [line for line in lines if line.get("event") == "http_request"]
    assert any(str(a.get("path", "")).startswith("/r/") for a in access), access
    # Whoever reads the logs could otherwise release, withdraw or read the recipients.
    ours = "\n".join(str(line) for line in lines if line.get("logger") != "httpx")  # the client's
    assert token.rsplit(".", 1)[1] not in ours  # the signature
    assert token.split(".")[2] not in ours  # nor the nonce


async def test_a_link_with_non_ascii_signature_gets_the_refusal_page(
    upstream: RecordingUpstream,
) -> None:
    settings = review_settings(upstream.port, max_refusals=2)
    async with running_relay(settings) as relay, httpx.AsyncClient() as http:
        mid = await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        base = settings.review.public_url + "/r/"
        parts = link.removeprefix(base).split(".")
        mangled = ".".join([*parts[:3], "%C3%A9" + parts[3][2:]])
        for _ in range(2):
            resp = await http.get(base + mangled)
            assert resp.status_code == 403 and "not valid" in resp.text, resp.text
        assert (await http.get(base + mangled)).status_code == 429  # throttled like the rest
        audit = await relay.store.list_audit(50, "-")  # a malformed link names no message
        assert [e.result for e in audit if e.action == "self_service_link"] == ["refused"] * 2
        assert (await relay.store.get(mid)).status == "held"  # type: ignore[union-attr]


def test_config_refuses_an_undo_hold_that_would_send_a_four_eyes_rule_as_written(
    tmp_path: Path,
) -> None:
    # Such a hold could never be delivered (the four-eyes guard refuses the timer at
    # every poll, auditing each refusal), while its notice promises "as you wrote it".
    config = tmp_path / "ccguard.toml"
    config.write_text(
        '[upstream]\nhost = "127.0.0.1"\nport = 2525\n'
        '[[policy.rules]]\nname = "hold"\nmin_visible_external = 5\naction = "quarantine"\n'
        'four_eyes = true\nhold_minutes = 5\nafter_delay = "as-is"\n'
    )
    result = run_ccguard("config", "check", "--config", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "four_eyes" in result.stderr and "after_delay" in result.stderr
    config.write_text(config.read_text().replace('"as-is"', '"hidden"'))
    assert run_ccguard("config", "check", "--config", str(config)).returncode == 0


async def test_a_four_eyes_undo_hold_offers_no_send_now(upstream: RecordingUpstream) -> None:
    rules = held_rules(hold_minutes=2, four_eyes=True)
    settings = review_settings(upstream.port, rules=rules, delay_poll=300)
    async with running_relay(settings) as relay, httpx.AsyncClient() as http:
        mid = await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        assert "send it now as written" not in body_of(notices_to_sender(upstream)[0])
        page = await http.get(link)
        assert page.status_code == 200 and "Send with recipients hidden" in page.text
        assert "Send now as written" not in page.text  # it could only be refused
        refused = await http.post(link, data={"choice": "send_now"})
        assert refused.status_code == 400 and "not available" in refused.text
        stored = await relay.store.get(mid)
        assert stored is not None and stored.status == "held"
        assert [m for m in upstream.messages if m.mail_from == SENDER] == []


def _send_invitation(port: int) -> bytes:
    entity = part(ics(attendee_lines(6)))
    data = invitation(entity, to=", ".join(EXTERNAL_RCPTS), subject="Induction day")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("app.example.org")
        client.mail(SENDER)
        for rcpt in EXTERNAL_RCPTS:
            client.rcpt(rcpt)
        code, text = client.data(data)
    assert code == 250, text
    return text


async def test_an_undo_hold_that_cannot_go_hidden_stops_instead_of_retrying_forever(
    upstream: RecordingUpstream,
) -> None:
    # An invitation's attendee list cannot be hidden, so after_delay = "hidden" can never
    # deliver it: the timer must hand it to the reviewers (still held), not refuse it at
    # every poll (an audit entry each time) and keep a due-list slot for ever.
    clock = Clock(1_800_000_000.0)
    settings = review_settings(upstream.port, rules=held_rules(hold_minutes=1), delay_poll=300)
    async with running_relay(settings, clock=clock) as relay:
        text = await asyncio.to_thread(_send_invitation, relay.smtp_port)
        mid = text.decode().rsplit(" ", 1)[1]
        clock.now += 61
        holds = relay.self_service.holds
        for _ in range(3):
            assert await holds.run_once() == 0
        refusals = [e for e in await relay.store.list_audit(100, mid)
                    if e.action == "release" and e.result == "refused"]  # fmt: skip
        assert len(refusals) == 1, refusals
        timer = await relay.store.get_delay(mid)
        assert timer is not None and timer.status != "pending"
        stored = await relay.store.get(mid)
        assert stored is not None and stored.status == "held"  # a reviewer decides now
        assert [m for m in upstream.messages if m.mail_from == SENDER] == []


# The reviewer's login is an address: the audit log line names it (the logging safety
# net hashes it in `ccguard serve`, as for any admin login that is an address).
@pytest.mark.logs_may_contain_addresses
async def test_the_sender_cannot_approve_her_own_request_as_a_reviewer(
    upstream: RecordingUpstream,
) -> None:
    # Reviewers send mail too, and a reviewer login may be an address: the sender's
    # request from the link is hers, under whichever name she logs in.
    settings = review_settings(upstream.port)
    users = UserDB(settings.admin.users_file)
    users.set_password(SENDER.upper(), PASSWORD)
    users.set_password("bob", PASSWORD)
    async with running_relay(settings) as relay, httpx.AsyncClient() as http:
        api = f"http://127.0.0.1:{relay.http_port('admin')}/api"
        mid = await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        made = await http.post(link, data={"choice": "request", "justification": "board list"})
        assert made.status_code == 200
        (req,) = (await http.get(f"{api}/requests", headers=basic("bob"))).json()["items"]
        url = f"{api}/requests/{req['id']}/approve"
        own = await http.post(url, json={}, headers=basic(SENDER.upper()))
        assert own.status_code == 403 and own.json()["error"] == "four_eyes", own.text
        assert [m for m in upstream.messages if m.mail_from == SENDER] == []
        assert (await http.post(url, json={}, headers=basic("bob"))).status_code == 200
        audit = [(e.actor, e.action, e.result) for e in await relay.store.list_audit(100, mid)]
        assert (SENDER.upper(), "approve", "refused") in audit


async def test_concurrent_posts_of_one_link_and_of_two_links_deliver_once(
    upstream: RecordingUpstream,
) -> None:
    settings = review_settings(upstream.port, max_refusals=50)
    async with running_relay(settings) as relay, httpx.AsyncClient(timeout=30) as http:
        await send_held(relay.smtp_port, "First")
        link = await notice_link(upstream)
        same = await asyncio.gather(*(http.post(link, data={"choice": "hidden"}) for _ in range(6)))
        assert [a.status_code for a in same].count(200) == 1, same
        second = await send_held(relay.smtp_port, "Second")
        signer = relay.self_service.service.signer  # type: ignore[union-attr]
        # Two links of one message (a denial mail carries a fresh one), raced.
        links = [await notice_link(upstream, 2), settings.review.public_url + "/r/"
                 + signer.make(second, SENDER)]  # fmt: skip
        two = await asyncio.gather(
            http.post(links[0], data={"choice": "hidden"}),
            http.post(links[1], data={"choice": "split"}),
        )
        assert [a.status_code for a in two].count(200) == 1, [a.text for a in two]
    got: dict[str, int] = {}
    for m in upstream.messages:
        if m.mail_from == SENDER:
            for rcpt in m.rcpt_tos:
                got[rcpt] = got.get(rcpt, 0) + 1
    assert set(got.values()) == {2} and len(got) == len({*INTERNAL_RCPTS, *EXTERNAL_RCPTS})


async def test_a_request_whose_message_was_released_meanwhile_cannot_be_approved(
    upstream: RecordingUpstream,
) -> None:
    settings = review_settings(upstream.port)
    users = UserDB(settings.admin.users_file)
    users.set_password("alice", PASSWORD)
    users.set_password("bob", PASSWORD)
    async with running_relay(settings) as relay, httpx.AsyncClient() as http:
        admin = f"http://127.0.0.1:{relay.http_port('admin')}"
        mid = await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        made = await http.post(link, data={"choice": "request", "justification": "board list"})
        assert made.status_code == 200
        # Alice deals with the message from the quarantine page, not the request.
        hidden = await http.post(f"{admin}/api/quarantine/{mid}/release",
                                 json={"mode": "hidden"}, headers=basic("alice"))  # fmt: skip
        assert hidden.status_code == 200, hidden.text
        (req,) = (await http.get(f"{admin}/api/requests", headers=basic("bob"))).json()["items"]
        async with httpx.AsyncClient(base_url=admin) as web:
            token = CSRF.search((await web.get("/login")).text)
            assert token
            form = {"username": "bob", "password": PASSWORD, "csrf_token": token.group(1)}
            assert (await web.post("/login", data=form)).status_code == 303
            page = await web.get("/requests")
            csrf = CSRF.search(page.text)
            assert csrf
            approve = await web.post(f"/requests/{req['id']}/approve",
                                     data={"csrf_token": csrf.group(1), "comment": ""})  # fmt: skip
        assert approve.status_code == 409 and "released" in approve.text, approve.text
        api = await http.post(f"{admin}/api/requests/{req['id']}/approve", json={},
                              headers=basic("bob"))  # fmt: skip
        assert api.status_code == 409, api.text
        after = await relay.store.get_request(req["id"])
        assert after is not None and after.status != "approved" and after.approvals == ()
    # The sender's recipients got the hidden copy once; nothing went as written.
    copies = [m for m in upstream.messages if m.mail_from == SENDER]
    assert len(copies) == 1
