"""Every action on a real upstream transaction (aiosmtpd on 127.0.0.1) and a real SQLite store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from relay.actions import Dispatcher
from relay.observability.metrics import Metrics
from relay.quarantine import SqliteStore
from relay.settings import Action
from relay.upstream import UpstreamClient
from tests.helpers.actions import make_verdict, parsed
from tests.helpers.actions_smtp import ENV, MSG, RCPTS, TRACE, live
from tests.helpers.upstream import RecordingUpstream


async def test_pass_delivers_trace_and_the_message_unchanged(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    reply = await act.act(ENV, parsed(MSG), make_verdict(Action.PASS), await live(client), TRACE)
    assert reply.code == 250
    [got] = upstream.messages
    assert got.data == TRACE + MSG
    assert got.mail_from == "ann@example.org" and tuple(got.rcpt_tos) == RCPTS


async def test_pass_strips_a_forged_tag(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    forged = b"X-CCGuard-Action: pass\r\n" + MSG
    await act.act(ENV, parsed(forged), make_verdict(Action.PASS), await live(client), TRACE)
    assert upstream.messages[0].data == TRACE + MSG


async def test_tag_in_monitor_mode_says_what_would_have_happened(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    verdict = make_verdict(Action.TAG, monitor=True, matched=Action.REJECT, external=4, domains=2,
                           total=5)  # fmt: skip
    reply = await act.act(ENV, parsed(MSG), verdict, await live(client), TRACE)
    assert reply.code == 250
    assert (
        upstream.messages[0].data
        == TRACE
        + (
            b"X-CCGuard-Action: monitor; would=reject\r\nX-CCGuard-Rule: bulk-external\r\n"
            b"X-CCGuard-Exposure: visible_external=4; external_domains=2; visible_total=5;"
            b" unparseable=0\r\n"
        )
        + MSG
    )


async def test_rewrite_delivers_to_everyone_with_externals_hidden(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    reply = await act.act(ENV, parsed(MSG), make_verdict(Action.REWRITE), await live(client), TRACE)
    assert reply.code == 250
    [got] = upstream.messages
    assert tuple(got.rcpt_tos) == RCPTS
    assert got.data == TRACE + (
        b"X-CCGuard-Action: rewrite\r\nX-CCGuard-Rule: bulk-external\r\n"
        b"X-CCGuard-Exposure: visible_external=312; external_domains=41; visible_total=320;"
        b" unparseable=0\r\n"
        b"From: Ann <ann@example.org>\r\nTo: Bob <bob@example.org>\r\n"
        b"Subject: Training week\r\nMessage-ID: <m1@example.org>\r\n\r\nHello everyone.\r\n"
    )


async def test_reject_delivers_nothing_and_says_why(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    reply = await act.act(ENV, parsed(MSG), make_verdict(Action.REJECT), await live(client), TRACE)
    assert str(reply) == (
        "550 5.7.1 Message would show 312 external addresses (41 domains) in To/Cc; "
        "put recipients in Bcc or use mail merge"
    )
    assert upstream.messages == []


async def test_quarantine_holds_the_message_durably_and_delivers_nothing(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream, store: SqliteStore
) -> None:
    reply = await act.act(
        ENV, parsed(MSG), make_verdict(Action.QUARANTINE), await live(client), TRACE
    )
    assert (reply.code, reply.status) == (250, "2.0.0")
    held_id = reply.text.removeprefix("held for review as ")
    assert reply.text == f"held for review as {held_id}"
    stored = await store.get(held_id)
    assert stored is not None
    assert stored.message == TRACE + MSG
    assert stored.rcpt_tos == RCPTS and stored.mail_from == "ann@example.org"
    assert stored.status == "held" and stored.rule == "bulk-external"
    assert stored.exposure["visible_external"] == 312
    assert upstream.messages == []


async def test_quarantine_store_that_cannot_write_gives_451(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream, tmp_path: Path,
    metrics: Metrics,
) -> None:  # fmt: skip
    locker = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        reply = await act.act(
            ENV, parsed(MSG), make_verdict(Action.QUARANTINE), await live(client), TRACE
        )
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert str(reply) == "451 4.3.0 Quarantine store unavailable, try again later"
    assert metrics.registry.get_sample_value("ccguard_store_errors_total") == 1
    assert upstream.messages == []


async def test_upstream_refusal_on_pass_is_passed_back(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    upstream.data_hook = lambda env: "554 5.7.1 Spam not wanted"
    reply = await act.act(ENV, parsed(MSG), make_verdict(Action.PASS), await live(client), TRACE)
    assert reply.code == 554 and "Spam not wanted" in reply.text
    upstream.data_hook = lambda env: "451 4.3.0 Busy"
    reply = await act.act(ENV, parsed(MSG), make_verdict(Action.PASS), await live(client), TRACE)
    assert reply.code == 451
    assert upstream.messages == []
