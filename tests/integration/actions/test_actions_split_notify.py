"""Split exactly once across a client retry, sender notices, and quarantine release."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections import Counter
from dataclasses import replace

import pytest

from relay.actions import Dispatcher, QuarantineReleaser
from relay.envelope import Envelope
from relay.errors import UpstreamError
from relay.observability.metrics import Metrics
from relay.quarantine import SqliteStore
from relay.settings import Action
from relay.upstream import UpstreamClient
from tests.helpers.actions import MATCHER, exposure_of, make_verdict, parsed
from tests.helpers.actions_smtp import (
    ENV,
    MSG,
    RCPTS,
    REDACTOR,
    TRACE,
    dispatcher,
    fail_nth_data,
    live,
    notices,
)  # fmt: skip
from tests.helpers.relay import LogCapture
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import Gate, wait_until

TRACE2 = TRACE.replace(b"id Q1", b"id Q2")


async def test_split_gives_everyone_one_copy_showing_only_themselves(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    reply = await act.act(ENV, parsed(MSG), make_verdict(Action.SPLIT), await live(client), TRACE)
    assert str(reply) == "250 2.0.0 OK: delivered as 5 separate copies"
    got = {tuple(m.rcpt_tos): m for m in upstream.messages}
    assert set(got) == {("g1@example.com",), ("g2@example.net",), ("g3@example.com",),
                        ("g4@example.net",), ("bob@example.org",)}  # fmt: skip
    first = got[("g1@example.com",)].data
    assert first == TRACE + (
        b"X-CCGuard-Action: split\r\nX-CCGuard-Rule: bulk-external\r\n"
        b"X-CCGuard-Exposure: visible_external=312; external_domains=41; visible_total=320;"
        b" unparseable=0\r\n"
        b"From: Ann <ann@example.org>\r\nTo: Guest One <g1@example.com>\r\n"
        b"Subject: Training week\r\nMessage-ID: <m1@example.org>\r\n\r\nHello everyone.\r\n"
    )
    for rcpts, message in got.items():
        assert exposure_of(message.data).visible_external == (0 if rcpts[0].endswith(".org") else 1)
        assert message.mail_from == "ann@example.org"


async def test_split_fault_on_third_copy_then_retry_delivers_each_copy_once(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream, store: SqliteStore
) -> None:
    upstream.data_hook = fail_nth_data(3, "451 4.3.0 Try again later")
    first = await act.act(ENV, parsed(MSG), make_verdict(Action.SPLIT), await live(client), TRACE)
    assert (first.code, first.status) == (451, "4.4.0")
    # A deferred copy does not hold up the others: only g3's is missing.
    assert len(upstream.messages) == 4
    # The client's retry: same message, new transaction, new queue id and trace header.
    retry_env = replace(ENV, queue_id="Q2")
    second = await act.act(
        retry_env, parsed(MSG), make_verdict(Action.SPLIT), await live(client), TRACE2
    )
    assert second.code == 250
    assert upstream.messages[-1].rcpt_tos == ["g3@example.com"]
    per_rcpt = Counter(r for m in upstream.messages for r in m.rcpt_tos)
    assert per_rcpt == Counter(RCPTS)
    assert len(upstream.messages) == 5
    # A third attempt (e.g. the 250 was lost) sends nothing more.
    third = await act.act(
        retry_env, parsed(MSG), make_verdict(Action.SPLIT), await live(client), TRACE2
    )
    assert third.code == 250 and len(upstream.messages) == 5


async def test_split_copy_refused_for_good_is_bounced_to_the_sender(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream, log: LogCapture
) -> None:
    upstream.data_hook = fail_nth_data(2, "554 5.7.1 Not for this one")
    reply = await act.act(ENV, parsed(MSG), make_verdict(Action.SPLIT), await live(client), TRACE)
    assert str(reply) == "250 2.0.0 OK: delivered as 4 separate copies"
    await act.close()
    copies = [m for m in upstream.messages if m.mail_from == "ann@example.org"]
    assert sorted(r for m in copies for r in m.rcpt_tos) == sorted(set(RCPTS) - {"g2@example.net"})
    [bounce] = notices(upstream)
    assert bounce.rcpt_tos == ["ann@example.org"]
    mail = email.message_from_bytes(bounce.data, policy=email.policy.default)
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail.get_content_type() == "text/plain"
    assert "Training week" in mail["Subject"]
    body = mail.get_content()
    assert "<g2@example.net>" in body and "554 5.7.1 Not for this one" in body
    assert "g1@example.com" not in body
    refused = [e for e in log.events() if e["event"] == "split_copy_refused"]
    assert len(refused) == 1 and refused[0]["rcpt"] == REDACTOR.address("g2@example.net")
    assert "example" not in str([e for e in log.events() if e["event"].startswith("split")])
    # A retry (the 250 was lost) neither tries g2 again nor bounces again.
    again = await act.act(ENV, parsed(MSG), make_verdict(Action.SPLIT), await live(client), TRACE2)
    await act.close()
    assert again.code == 250 and len(upstream.messages) == 5


async def test_split_with_every_copy_refused_passes_the_5xx_back(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    upstream.data_hook = lambda env: "554 5.7.1 Nobody wants it"
    reply = await act.act(ENV, parsed(MSG), make_verdict(Action.SPLIT), await live(client), TRACE)
    assert reply.code == 554 and "Nobody wants it" in reply.text
    # The client reports the failure itself: no bounce from ccguard too.
    assert act.notices.pending == 0


def notified(metrics: Metrics) -> dict[str, float | None]:
    value = metrics.registry.get_sample_value
    return {r: value("ccguard_notifications_total", {"result": r}) for r in ("sent", "failed")}


@pytest.fixture
def noticing(
    upstream: RecordingUpstream, client: UpstreamClient, store: SqliteStore,
    metrics: Metrics, log: LogCapture,
) -> Dispatcher:  # fmt: skip
    notifications = {"enabled": True, "on_actions": ["quarantine", "split"],
                     "from": "postmaster@example.org"}  # fmt: skip
    return dispatcher(upstream, client, store, metrics, log, **notifications)


async def test_internal_sender_gets_a_notice_when_held(
    noticing: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream,
    metrics: Metrics,
) -> None:  # fmt: skip
    reply = await noticing.act(
        ENV, parsed(MSG), make_verdict(Action.QUARANTINE), await live(client), TRACE
    )
    held_id = reply.text.rsplit(" ", 1)[1]
    await noticing.close()
    [notice] = notices(upstream)
    assert notice.rcpt_tos == ["ann@example.org"]
    mail = email.message_from_bytes(notice.data, policy=email.policy.default)
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Subject"] == "Your message is held for review: Training week"
    assert held_id in mail.get_content()
    assert notified(metrics) == {"sent": 1, "failed": 0}
    assert len(upstream.messages) == 1  # the notice only: the held message went nowhere


@pytest.mark.parametrize("sender", ["someone@example.com", ""])
async def test_no_notice_for_external_or_null_senders(
    noticing: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream, sender: str
) -> None:
    env = replace(ENV, mail_from=sender)
    reply = await noticing.act(
        env, parsed(MSG), make_verdict(Action.QUARANTINE), await live(client, env), TRACE
    )
    assert reply.code == 250
    assert noticing.notices.pending == 0
    await noticing.close()
    assert upstream.messages == []


async def test_a_notice_is_never_itself_noticed(
    noticing: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    await noticing.act(ENV, parsed(MSG), make_verdict(Action.QUARANTINE), await live(client), TRACE)
    await noticing.close()
    [notice] = notices(upstream)
    # The notice comes back through ccguard (a looping setup) and is held again.
    env = Envelope("ann@example.org", ("ann@example.org",))
    reply = await noticing.act(env, parsed(notice.data), make_verdict(Action.QUARANTINE),
                               await live(client, env), TRACE)  # fmt: skip
    assert reply.code == 250
    assert noticing.notices.pending == 0
    await noticing.close()
    assert len(notices(upstream)) == 1


async def test_notice_is_retried_and_a_final_failure_never_fails_the_message(
    noticing: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream,
    metrics: Metrics, log: LogCapture,
) -> None:  # fmt: skip
    upstream.data_hook = fail_nth_data(1, "451 4.3.0 Busy")
    await noticing.act(ENV, parsed(MSG), make_verdict(Action.QUARANTINE), await live(client), TRACE)
    await noticing.close()
    assert len(notices(upstream)) == 1 and notified(metrics) == {"sent": 1, "failed": 0}
    upstream.refuse_rcpt["ann@example.org"] = "550 5.1.1 No such user"
    reply = await noticing.act(
        ENV, parsed(MSG), make_verdict(Action.QUARANTINE), await live(client), TRACE
    )
    assert reply.code == 250
    await noticing.close()
    assert notified(metrics) == {"sent": 1, "failed": 1}
    failed = [e for e in log.events() if e["event"] == "notice_failed"]
    assert len(failed) == 1 and failed[0]["rcpt"] == REDACTOR.address("ann@example.org")
    assert "example" not in str(failed)


async def test_notices_never_hold_up_the_reply(
    noticing: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    gate = Gate()  # the notice's delivery waits in DATA until the reply is in
    upstream.data_gate = gate.hold
    txn = await live(client)
    acting = noticing.act(ENV, parsed(MSG), make_verdict(Action.QUARANTINE), txn, TRACE)
    reply = await asyncio.wait_for(acting, 30)  # a reply that waited for the notice: never
    assert reply.code == 250 and noticing.notices.pending == 1
    await wait_until(lambda: gate.waiting == 1, "the notice is with the upstream")
    assert noticing.notices.pending == 1 and notices(upstream) == []
    gate.open()
    await noticing.close()
    assert len(notices(upstream)) == 1


async def test_release_as_is_and_hidden(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream, store: SqliteStore
) -> None:
    reply = await act.act(
        ENV, parsed(MSG), make_verdict(Action.QUARANTINE), await live(client), TRACE
    )
    stored = await store.get(reply.text.rsplit(" ", 1)[1])
    assert stored is not None
    releaser = QuarantineReleaser(client, MATCHER)
    assert (await releaser.release(stored, "as-is")).delivered == RCPTS
    assert (await releaser.release(stored, "hidden")).reply.code == 250  # type: ignore[union-attr]
    as_is, hidden = upstream.messages[:2]
    assert as_is.data == TRACE + MSG and tuple(as_is.rcpt_tos) == RCPTS
    assert tuple(hidden.rcpt_tos) == RCPTS
    # Like a live delivery: ccguard's Received header first, then the tags.
    assert hidden.data.startswith(TRACE + b"X-CCGuard-Action: rewrite; released\r\n")
    live_rewrite = await act.act(
        ENV, parsed(MSG), make_verdict(Action.REWRITE), await live(client), TRACE
    )
    assert live_rewrite.code == 250
    live_names = [f.key for f in parsed(upstream.messages[-1].data).fields]
    hidden_names = [f.key for f in parsed(hidden.data).fields]
    assert hidden_names[:4] == live_names[:4] == [
        "received", "x-ccguard-action", "x-ccguard-rule", "x-ccguard-exposure",
    ]  # fmt: skip
    assert exposure_of(hidden.data).visible_external == 0
    await upstream.stop()
    down = UpstreamClient(client.settings, local_hostname="ccguard.test")
    try:
        with pytest.raises(UpstreamError):
            await QuarantineReleaser(down, MATCHER).release(stored, "as-is")
    finally:
        await down.close()
