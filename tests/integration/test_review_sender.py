"""The sender's page on a real relay: the notice that arrived upstream carries a link;
opening it and pressing a button delivers (hidden, split) or withdraws exactly once."""

from __future__ import annotations

import email
import email.policy

import httpx

from relay.quarantine import DELETED, RELEASED
from tests.helpers.admin import EXTERNAL_RCPTS, INTERNAL_RCPTS
from tests.helpers.relay import running_relay
from tests.helpers.selfservice import (
    SENDER,
    body_of,
    notice_link,
    notices_to_sender,
    review_settings,
    send_held,
)
from tests.helpers.upstream import RecordingUpstream

ALL = {*INTERNAL_RCPTS, *EXTERNAL_RCPTS}


def _copies(upstream: RecordingUpstream) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(m.data, policy=email.policy.default)  # type: ignore[misc]
        for m in upstream.messages
        if m.mail_from == SENDER
    ]


async def test_notice_link_hidden_delivers_once_then_the_link_is_used(
    upstream: RecordingUpstream,
) -> None:
    settings = review_settings(upstream.port)
    async with running_relay(settings) as relay, httpx.AsyncClient() as http:
        mid = await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        text = body_of(notices_to_sender(upstream)[0])
        assert "Deal with it yourself" in text and "send it with the recipients hidden" in text
        assert link.startswith(settings.review.public_url + "/r/" + mid + ".")

        page = await http.get(link)
        assert page.status_code == 200
        assert "Welcome to the training" in page.text
        assert "Send with recipients hidden" in page.text
        assert "trainee0@example.com" in page.text  # the sender's own recipients

        done = await http.post(link, data={"choice": "hidden"})
        assert done.status_code == 200 and "external addresses hidden" in done.text
        copies = _copies(upstream)
        assert len(copies) == 1 and set(upstream.messages[-1].rcpt_tos) == ALL
        assert str(copies[0]["To"]) == ", ".join(INTERNAL_RCPTS)
        assert copies[0]["Cc"] is None  # the external addresses are gone
        stored = await relay.store.get(mid)
        assert stored is not None and stored.status == RELEASED
        assert stored.released_by is not None and stored.released_by.startswith("sender:")
        assert SENDER not in stored.released_by

        again = await http.post(link, data={"choice": "hidden"})
        assert again.status_code == 410 and "already used" in again.text
        reopened = await http.get(link)
        assert reopened.status_code == 410
        assert len(_copies(upstream)) == 1

        audit = [(e.actor[:7], e.action, e.result) for e in await relay.store.list_audit(50, mid)]
        assert ("sender:", "self_service_open", "ok") in audit
        assert ("sender:", "release", "ok") in audit
        assert audit.count(("(self-s", "self_service_link", "refused")) == 2
        metrics = (await http.get(f"http://127.0.0.1:{relay.http_port('admin')}/metrics")).text
        assert 'ccguard_self_service_total{action="hidden"} 1.0' in metrics
        assert 'ccguard_self_service_total{action="refused"} 2.0' in metrics


async def test_split_sends_one_copy_per_recipient_exactly_once(
    upstream: RecordingUpstream,
) -> None:
    async with running_relay(review_settings(upstream.port)) as relay, httpx.AsyncClient() as http:
        mid = await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        done = await http.post(link, data={"choice": "split"})
        assert done.status_code == 200 and "own copy" in done.text
        sent = [m for m in upstream.messages if m.mail_from == SENDER]
        by_rcpt = [r for m in sent for r in m.rcpt_tos]
        assert sorted(by_rcpt) == sorted(ALL)  # each recipient exactly once
        for copy in _copies(upstream):
            shown = str(copy["Cc"] or "")
            assert shown.count("@") <= 1  # nobody sees another external recipient
        stored = await relay.store.get(mid)
        assert stored is not None and (stored.status, stored.release_mode) == (RELEASED, "split")
        assert (await http.post(link, data={"choice": "split"})).status_code == 410
        assert len([m for m in upstream.messages if m.mail_from == SENDER]) == len(sent)


async def test_withdraw_deletes_and_nothing_is_sent(upstream: RecordingUpstream) -> None:
    async with running_relay(review_settings(upstream.port)) as relay, httpx.AsyncClient() as http:
        mid = await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        done = await http.post(link, data={"choice": "withdraw"})
        assert done.status_code == 200 and "Withdrawn" in done.text
        stored = await relay.store.get(mid)
        assert stored is not None and stored.status == DELETED and stored.message == b""
        assert _copies(upstream) == []


async def test_sender_may_limits_the_buttons_and_the_posts(upstream: RecordingUpstream) -> None:
    settings = review_settings(upstream.port, sender_may=["withdraw"])
    async with running_relay(settings) as relay, httpx.AsyncClient() as http:
        await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        page = await http.get(link)
        assert "Withdraw" in page.text and "Send with recipients hidden" not in page.text
        refused = await http.post(link, data={"choice": "hidden"})
        assert refused.status_code == 400 and "not available" in refused.text
        assert _copies(upstream) == []
        assert (await http.post(link, data={"choice": "withdraw"})).status_code == 200
