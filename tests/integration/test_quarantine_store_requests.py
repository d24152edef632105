"""Sender self-service rows on a real SQLite file and a real PostgreSQL database alike:
used tokens, release requests with four-eyes approvals, undo-hold timers, migration."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from relay.errors import (
    FourEyesError,
    QuarantineNotFound,
    QuarantineStateError,
    RequestNotFound,
    RequestStateError,
)
from relay.quarantine import QuarantineStore, SqliteStore
from relay.quarantine.requests import APPROVED, DENIED, PENDING
from relay.quarantine.sqlite_schema import MIGRATIONS, SCHEMA_VERSION
from tests.helpers.quarantine_store import Clock, new_message
from tests.integration.conftest import StoreFactory


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(make_store: StoreFactory, clock: Clock) -> QuarantineStore:
    s = make_store(clock=clock)
    await s.open()
    return s


async def test_a_token_is_used_once_even_when_two_uses_race(store: QuarantineStore) -> None:
    mid = await store.put(new_message())
    assert await store.token_used("t1") is None
    results = await asyncio.gather(*(store.use_token("t1", mid, "hidden") for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    assert await store.token_used("t1") == "hidden"


async def test_request_needs_a_held_message_and_one_pending_at_a_time(
    store: QuarantineStore, clock: Clock
) -> None:
    mid = await store.put(new_message())
    with pytest.raises(QuarantineNotFound):
        await store.add_request("no-such-id", "sender:abc", "why")
    made = await store.add_request(mid, "sender:abc", "The list is public", 2)
    assert (made.status, made.requester, made.justification) == (
        PENDING,
        "sender:abc",
        "The list is public",
    )
    assert (made.approvals_needed, made.created_at, made.approvals) == (2, clock.now, ())
    with pytest.raises(RequestStateError):
        await store.add_request(mid, "sender:abc", "again")
    assert [r.id for r in await store.list_requests(status=PENDING)] == [made.id]
    assert await store.get_request(made.id) == made
    other = await store.put(new_message())
    await store.delete(other, "admin")
    with pytest.raises(QuarantineStateError):
        await store.add_request(other, "sender:abc", "why")


async def test_four_eyes_two_different_reviewers_never_the_requester(
    store: QuarantineStore, clock: Clock
) -> None:
    mid = await store.put(new_message())
    req = await store.add_request(mid, "alice", "needs to go as written", 2)
    with pytest.raises(FourEyesError, match="you made this request"):
        await store.approve_request(req.id, "alice")
    clock.now += 5
    first = await store.approve_request(req.id, "bob", "ok by me")
    assert (first.status, first.approvers) == (PENDING, ("bob",))
    with pytest.raises(FourEyesError, match="second, different reviewer"):
        await store.approve_request(req.id, "bob")
    clock.now += 5
    done = await store.approve_request(req.id, "carol", "agreed")
    assert (done.status, done.approvers, done.decided_by, done.comment) == (
        APPROVED, ("bob", "carol"), "carol", "agreed",
    )  # fmt: skip
    assert done.decided_at == clock.now
    with pytest.raises(RequestStateError):
        await store.approve_request(req.id, "dave")
    with pytest.raises(RequestNotFound):
        await store.approve_request("rnope", "dave")


async def test_concurrent_approvals_decide_once(make_store: StoreFactory) -> None:
    a, b = make_store(), make_store()  # two processes on one database
    await a.open()
    await b.open()
    mid = await a.put(new_message())
    req = await a.add_request(mid, "sender:x", "why", 2)
    got = await asyncio.gather(a.approve_request(req.id, "bob"), b.approve_request(req.id, "carol"))
    final = await a.get_request(req.id)
    assert final is not None and final.status == APPROVED
    assert sorted(final.approvers) == ["bob", "carol"]
    assert sorted(r.status for r in got) == [APPROVED, PENDING]


async def test_deny_is_final(store: QuarantineStore) -> None:
    mid = await store.put(new_message())
    req = await store.add_request(mid, "sender:x", "why")
    denied = await store.deny_request(req.id, "bob", "use Bcc")
    assert (denied.status, denied.decided_by, denied.comment) == (DENIED, "bob", "use Bcc")
    with pytest.raises(RequestStateError):
        await store.approve_request(req.id, "carol")
    assert await store.list_requests(status=PENDING) == []
    assert [r.status for r in await store.list_requests(message_id=mid)] == [DENIED]
    again = await store.add_request(mid, "sender:x", "please")  # a new one may be made
    assert again.status == PENDING


async def test_delay_timers_come_due_by_the_store_clock(
    store: QuarantineStore, clock: Clock
) -> None:
    mid = await store.put(new_message())
    gone = await store.put(new_message())
    await store.set_delay(mid, clock.now + 60, "rewrite")
    await store.set_delay(gone, clock.now + 60, "as-is")
    await store.delete(gone, "sender")
    assert await store.due_delays() == []
    clock.now += 61
    due = await store.due_delays()
    assert [(d.message_id, d.mode) for d in due] == [(mid, "rewrite")]  # deleted one is not due
    assert await store.finish_delay(mid, "done") is True
    assert await store.finish_delay(mid, "cancelled") is False
    timer = await store.get_delay(mid)
    assert timer is not None and timer.status == "done"
    assert await store.due_delays() == []


async def test_sqlite_v4_file_is_migrated_to_v5_keeping_messages(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:4]:
        for statement in migration:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 4")
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        mid = await store.put(new_message())
        assert (await store.add_request(mid, "sender:x", "why")).status == PENDING
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    conn.close()


async def test_purge_takes_requests_holds_and_tokens_with_the_messages(
    store: QuarantineStore, clock: Clock
) -> None:
    old = await store.put(new_message(received_at=1_000.0))
    new = await store.put(new_message(received_at=2_000.0))
    for mid in (old, new):
        req = await store.add_request(mid, "sender:x", "personal reasons", 2)
        await store.approve_request(req.id, "bob")
        await store.set_delay(mid, 5_000.0, "rewrite")
        await store.use_token(f"t-{mid}", mid, "request")
    assert await store.expire(1_500.0) == 1
    assert [r.message_id for r in await store.list_requests()] == [new]
    assert await store.get_delay(old) is None and await store.get_delay(new) is not None
    assert await store.token_used(f"t-{old}") is None
    assert await store.token_used(f"t-{new}") == "request"


async def test_no_approval_counts_once_the_message_was_dealt_with(store: QuarantineStore) -> None:
    mid = await store.put(new_message())
    request = await store.add_request(mid, "sender:abc", "The list is public")
    await store.delete(mid, "alice")  # a reviewer withdrew it from the quarantine page
    with pytest.raises(QuarantineStateError):
        await store.approve_request(request.id, "bob")
    after = await store.get_request(request.id)
    assert after is not None and (after.status, after.approvals) == (PENDING, ())
