"""The split action's lease on a real SQLite file: waiting, taking over, fencing.

Another process on the same database is played by a second SQLite
connection to the file (the lease rows are all another instance would write).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relay.actions import Dispatcher, split_key
from relay.actions.split import delivered_id
from relay.observability.metrics import Metrics
from relay.quarantine import SqliteStore
from relay.settings import Action
from relay.upstream import UpstreamClient
from tests.helpers.actions import MATCHER, make_verdict, parsed
from tests.helpers.actions_smtp import ENV, MSG, RCPTS, REDACTOR, TRACE, live
from tests.helpers.relay import LogCapture, settings_for
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import Gate, wait_until

SPLIT = make_verdict(Action.SPLIT)
KEY = split_key(ENV, parsed(MSG).data)


@pytest.fixture
async def quick(
    upstream: RecordingUpstream, client: UpstreamClient, store: SqliteStore, metrics: Metrics,
    log: LogCapture, tmp_path: Path,
) -> AsyncIterator[Dispatcher]:  # fmt: skip
    """A dispatcher that waits at most 0.3 s for another attempt's claim."""
    quarantine = {"database": str(tmp_path / "q.db"), "claim_wait": 0.3, "claim_lease": 30}
    settings = settings_for(upstream.port, quarantine=quarantine)
    d = Dispatcher(
        upstream=client, store=store, matcher=MATCHER, settings=settings,
        metrics=metrics, log=log.logger, redact=REDACTOR.address,
    )  # fmt: skip
    try:
        yield d
    finally:
        await d.close()


def per_rcpt(upstream: RecordingUpstream) -> Counter[str]:
    return Counter(r for m in upstream.messages for r in m.rcpt_tos)


def claim_events(metrics: Metrics, event: str) -> float:
    name = "ccguard_claim_events_total"
    return metrics.registry.get_sample_value(name, {"kind": "split", "event": event}) or 0.0


async def test_a_claim_held_elsewhere_makes_the_retry_wait_then_answer_451(
    quick: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream, store: SqliteStore,
    metrics: Metrics, tmp_path: Path,
) -> None:  # fmt: skip
    other = SqliteStore(tmp_path / "q.db")  # another instance, mid-attempt
    await other.open()
    try:
        lease = await other.acquire_lease(KEY, "other-instance", 30)
        assert lease is not None
        busy = await quick.act(ENV, parsed(MSG), SPLIT, await live(client), TRACE)
        assert (
            str(busy) == "451 4.3.0 Another delivery of this message is under way, try again later"
        )
        assert upstream.messages == []
        assert claim_events(metrics, "wait_timed_out") == 1
        await other.drop_lease(lease)  # the other attempt is done
    finally:
        await other.close()
    done = await quick.act(ENV, parsed(MSG), SPLIT, await live(client), TRACE)
    assert done.code == 250 and per_rcpt(upstream) == Counter(RCPTS)


async def test_an_expired_claim_of_a_dead_holder_is_taken_over(
    quick: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream, store: SqliteStore,
    metrics: Metrics, log: LogCapture,
) -> None:  # fmt: skip
    assert await store.acquire_lease(KEY, "crashed-instance", 0) is not None  # already expired
    reply = await quick.act(ENV, parsed(MSG), SPLIT, await live(client), TRACE)
    assert reply.code == 250 and per_rcpt(upstream) == Counter(RCPTS)
    assert claim_events(metrics, "taken_over") == 1
    assert "split_claim_taken_over" in [e["event"] for e in log.events()]


async def test_a_holder_whose_claim_was_taken_over_cannot_record(
    quick: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream, store: SqliteStore,
    tmp_path: Path,
) -> None:  # fmt: skip
    thief = sqlite3.connect(tmp_path / "q.db", isolation_level=None)

    def take_over(envelope: Any) -> None:
        # As another instance would after this one's lease expired.
        thief.execute("UPDATE leases SET holder = 'thief', token = token + 1")

    upstream.data_hook = take_over
    try:
        reply = await quick.act(ENV, parsed(MSG), SPLIT, await live(client), TRACE)
    finally:
        upstream.data_hook = None
        thief.close()
    assert str(reply) == "451 4.3.0 Quarantine store unavailable, try again later"
    assert per_rcpt(upstream) == Counter(["g1@example.com"])  # it stopped at the refused write
    assert await store.copies_done(KEY) == set()  # nothing recorded under a lost lease


@pytest.fixture
async def short(
    upstream: RecordingUpstream, client: UpstreamClient, store: SqliteStore, metrics: Metrics,
    log: LogCapture, tmp_path: Path,
) -> AsyncIterator[Dispatcher]:  # fmt: skip
    """A dispatcher whose leases last 1 s (renewed every third of that)."""
    quarantine = {"database": str(tmp_path / "q.db"), "claim_wait": 0.3, "claim_lease": 1}
    settings = settings_for(upstream.port, quarantine=quarantine)
    d = Dispatcher(
        upstream=client, store=store, matcher=MATCHER, settings=settings,
        metrics=metrics, log=log.logger, redact=REDACTOR.address,
    )  # fmt: skip
    try:
        yield d
    finally:
        await d.close()


async def test_a_holder_that_found_its_claim_taken_over_sends_no_further_copy(
    short: Dispatcher, client: UpstreamClient, upstream: RecordingUpstream, store: SqliteStore,
    metrics: Metrics, tmp_path: Path,
) -> None:  # fmt: skip
    """The second copy's RCPT is held at the upstream; meanwhile another instance takes
    the key over and this holder's renewal finds out.  Before, it went on to DATA and the
    upstream took a copy the other instance sends too; now it aborts before DATA."""
    txn = await live(client)  # the client's transaction, as the SMTP front opened it
    gate = Gate("g2@example.net")  # from now on, only g2's RCPT waits
    upstream.rcpt_gate = gate.hold
    thief = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    try:
        act = asyncio.create_task(short.act(ENV, parsed(MSG), SPLIT, txn, TRACE))
        await wait_until(lambda: gate.waiting == 1, "the second copy reached RCPT")
        thief.execute("UPDATE leases SET holder = 'thief', token = token + 1")  # taken over
        await wait_until(lambda: claim_events(metrics, "lost") == 1, "the holder found out")
        gate.open()
        reply = await act
    finally:
        gate.open()
        thief.close()
    assert str(reply) == "451 4.3.0 Quarantine store unavailable, try again later"
    assert per_rcpt(upstream) == Counter(["g1@example.com"])  # g2's copy was never sent
    assert await store.copies_done(KEY) == {delivered_id("g1@example.com")}
