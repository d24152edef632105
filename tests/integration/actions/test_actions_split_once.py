"""Split: exactly once per recipient across partial refusals, subset retries,
concurrent attempts and ledger failures; bounces; ccguard's own 4xx replies."""

from __future__ import annotations

import asyncio
import email
import email.policy
import sqlite3
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from relay.actions import Dispatcher, split_key
from relay.envelope import Envelope
from relay.observability.metrics import Metrics
from relay.quarantine import SqliteStore
from relay.settings import Action
from relay.upstream import UpstreamClient
from tests.helpers.actions import make_verdict, parsed
from tests.helpers.actions_smtp import ENV, MSG, RCPTS, TRACE, fail_nth_data, live, notices
from tests.helpers.relay import LogCapture
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import Gate, wait_until

SPLIT = make_verdict(Action.SPLIT)


def per_rcpt(upstream: RecordingUpstream, sender: str = "ann@example.org") -> Counter[str]:
    """How many copies each recipient got (notices and bounces left out)."""
    return Counter(r for m in upstream.messages if m.mail_from == sender for r in m.rcpt_tos)


async def test_internal_recipient_deferred_gets_451_and_only_they_get_the_retry(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    env = replace(ENV, rcpt_tos=(*RCPTS, "carol@example.org"))
    txn = await live(client, env)  # RCPT time: carol is still accepted
    upstream.refuse_rcpt["carol@example.org"] = "450 4.2.1 Mailbox busy"
    first = await act.act(env, parsed(MSG), SPLIT, txn, TRACE)
    assert str(first) == (
        "451 4.4.0 Upstream server deferred the message, try again later"
        " (upstream said: 450 Mailbox busy)"
    )
    assert "carol@example.org" not in per_rcpt(upstream)
    del upstream.refuse_rcpt["carol@example.org"]
    second = await act.act(env, parsed(MSG), SPLIT, await live(client, env), TRACE)
    assert second.code == 250
    assert upstream.messages[-1].rcpt_tos == ["carol@example.org"]
    assert per_rcpt(upstream) == Counter(env.rcpt_tos)


async def test_deferred_single_copy_gets_ccguards_451_not_the_upstreams_text(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    txn = await live(client)
    upstream.refuse_rcpt["g2@example.net"] = "452 4.2.2 Mailbox full"
    reply = await act.act(ENV, parsed(MSG), SPLIT, txn, TRACE)
    assert str(reply) == (
        "451 4.4.0 Upstream server deferred the message, try again later"
        " (upstream said: 452 Mailbox full)"
    )
    assert per_rcpt(upstream) == Counter(set(RCPTS) - {"g2@example.net"})


async def test_retry_to_a_subset_of_the_recipients_sends_no_duplicates(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    upstream.data_hook = fail_nth_data(3, "451 4.3.0 Try again later")  # g3's copy
    first = await act.act(ENV, parsed(MSG), SPLIT, await live(client), TRACE)
    assert first.code == 451
    # The client retries only some recipients (e.g. g4 got a 4xx at RCPT time now).
    subset = replace(ENV, rcpt_tos=tuple(r for r in RCPTS if r != "g4@example.net"))
    second = await act.act(subset, parsed(MSG), SPLIT, await live(client, subset), TRACE)
    assert second.code == 250
    assert per_rcpt(upstream) == Counter(RCPTS)


@pytest.mark.parametrize("sender", ["ann@example.org", "someone@example.com"])
async def test_any_sender_gets_the_bounce_for_a_refused_copy(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream, sender: str
) -> None:
    env = replace(ENV, mail_from=sender)
    txn = await live(client, env)
    upstream.refuse_rcpt["g4@example.net"] = "550 5.1.1 No such user"
    reply = await act.act(env, parsed(MSG), SPLIT, txn, TRACE)
    assert reply.code == 250
    await act.close()
    [bounce] = notices(upstream)
    assert bounce.rcpt_tos == [sender]
    body = email.message_from_bytes(bounce.data, policy=email.policy.default).get_content()
    assert "<g4@example.net>" in body and "550 5.1.1 No such user" in body


async def test_null_sender_gets_no_bounce(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    env = replace(ENV, mail_from="")
    txn = await live(client, env)
    upstream.refuse_rcpt["g4@example.net"] = "550 5.1.1 No such user"
    reply = await act.act(env, parsed(MSG), SPLIT, txn, TRACE)
    assert reply.code == 250
    assert act.notices.pending == 0
    await act.close()
    assert len(upstream.messages) == 4


async def test_concurrent_attempts_of_one_message_send_each_copy_once(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    gate = Gate(first=1)  # the first attempt's first copy waits in DATA ...
    upstream.data_gate = gate.hold
    retry_env = replace(ENV, queue_id="Q2")
    first = asyncio.ensure_future(act.act(ENV, parsed(MSG), SPLIT, await live(client), TRACE))
    await wait_until(lambda: gate.waiting == 1, "the first attempt is in DATA")
    retry = asyncio.ensure_future(
        act.act(retry_env, parsed(MSG), SPLIT, await live(client, retry_env), TRACE)
    )
    key = split_key(ENV, MSG)  # ... until the retry waits for the same message's key
    await wait_until(lambda: act.splitter._locks.users(key) == 2, "the retry waits its turn")
    gate.open()
    replies = await asyncio.gather(first, retry)
    assert [r.code for r in replies] == [250, 250]
    assert per_rcpt(upstream) == Counter(RCPTS)
    assert act.splitter.busy == 0  # no lock left behind


async def test_other_messages_are_not_held_up_by_a_busy_key(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    other = Envelope("ann@example.org", ("g1@example.com",))
    gate = Gate(first=1)  # the slow message's first copy waits in DATA until opened
    upstream.data_gate = gate.hold
    slow = asyncio.ensure_future(act.act(ENV, parsed(MSG), SPLIT, await live(client), TRACE))
    await wait_until(lambda: gate.waiting == 1, "the slow message's first copy is in DATA")
    quick = await act.act(
        other, parsed(MSG + b"other\r\n"), SPLIT, await live(client, other), TRACE
    )
    assert quick.code == 250 and not slow.done() and gate.waiting == 1
    gate.open()
    assert (await slow).code == 250


async def test_connection_failure_stops_the_attempt(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream
) -> None:
    upstream.data_hook = fail_nth_data(2, "DISCONNECT")
    reply = await act.act(ENV, parsed(MSG), SPLIT, await live(client), TRACE)
    assert (reply.code, reply.status) == (451, "4.4.1")
    assert per_rcpt(upstream) == Counter(["g1@example.com"])
    again = await act.act(ENV, parsed(MSG), SPLIT, await live(client), TRACE)
    assert again.code == 250 and per_rcpt(upstream) == Counter(RCPTS)


async def test_ledger_write_failure_stops_sending_and_defers(
    act: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream, store: SqliteStore,
    metrics: Metrics, log: LogCapture, tmp_path: Path,
) -> None:  # fmt: skip
    locker = sqlite3.connect(tmp_path / "q.db", isolation_level=None)

    def lock_the_ledger(envelope: Any) -> None:
        if not locker.in_transaction:
            locker.execute("BEGIN IMMEDIATE")  # the store's next write times out

    upstream.data_hook = lock_the_ledger
    try:
        first = await act.act(ENV, parsed(MSG), SPLIT, await live(client), TRACE)
    finally:
        upstream.data_hook = None
        locker.rollback()
        locker.close()
    assert str(first) == "451 4.3.0 Quarantine store unavailable, try again later"
    assert per_rcpt(upstream) == Counter(["g1@example.com"])  # nothing sent after the failure
    assert metrics.registry.get_sample_value("ccguard_store_errors_total") == 1
    failed = [e for e in log.events() if e["event"] == "store_failed"]
    assert [e["operation"] for e in failed] == ["ledger_write"]
    second = await act.act(ENV, parsed(MSG), SPLIT, await live(client), TRACE)
    assert second.code == 250
    # Only the one copy whose entry was lost is repeated.
    assert per_rcpt(upstream) == Counter(RCPTS) + Counter(["g1@example.com"])
