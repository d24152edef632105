"""Release claims on a real SQLite file and a real PostgreSQL database: one winner,
stale claims expire; v1 SQLite files migrate."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from relay.errors import QuarantineClaimedError, QuarantineStateError
from relay.quarantine import (
    CLAIM_STALE_AFTER,
    HELD,
    RELEASE_AS_IS,
    RELEASED,
    QuarantineStore,
    SqliteStore,
    release_key,
)
from relay.quarantine.sqlite_schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from tests.helpers.quarantine_store import RAW, Clock, new_message
from tests.integration.conftest import StoreFactory

Pair = tuple[QuarantineStore, QuarantineStore]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def pair(make_store: StoreFactory, clock: Clock) -> Pair:
    """Two stores on one database: the web server and the CLI, or two instances."""
    first, second = make_store(clock=clock), make_store(clock=clock)
    await first.open()
    await second.open()
    return first, second


async def test_two_simultaneous_claims_have_exactly_one_winner(
    pair: Pair,
) -> None:
    first, second = pair
    for _ in range(20):
        mid = await first.put(new_message())
        results = await asyncio.gather(
            first.claim(mid, "alice"), second.claim(mid, "cli:root"), return_exceptions=True
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, QuarantineClaimedError)]
        assert len(winners) == 1 and len(losers) == 1, results
        assert losers[0].claimed_by == winners[0].claimed_by
        assert "being released by" in str(losers[0])


async def test_claim_returns_the_message_and_blocks_others_until_released(
    pair: Pair, clock: Clock
) -> None:
    first, second = pair
    mid = await first.put(new_message())
    claimed = await first.claim(mid, "alice")
    assert (claimed.message, claimed.claimed_by, claimed.claimed_at) == (RAW, "alice", clock.now)
    with pytest.raises(QuarantineClaimedError, match="being released by alice"):
        await second.claim(mid, "bob")
    with pytest.raises(QuarantineClaimedError, match="being released by alice"):
        await second.delete(mid, "bob")
    with pytest.raises(QuarantineClaimedError):
        await second.mark_released(mid, "bob", RELEASE_AS_IS)
    await second.release_claim(mid, "bob")  # not bob's: nothing happens
    with pytest.raises(QuarantineClaimedError):
        await second.claim(mid, "bob")
    await first.release_claim(mid, "alice")
    assert (await second.claim(mid, "bob")).claimed_by == "bob"
    released = await second.mark_released(mid, "bob", RELEASE_AS_IS)
    assert (released.status, released.released_by, released.claimed_by) == (RELEASED, "bob", None)
    with pytest.raises(QuarantineStateError, match="already released"):
        await first.claim(mid, "alice")


async def test_mark_released_needs_a_claim(pair: Pair) -> None:
    store, _ = pair
    mid = await store.put(new_message())
    with pytest.raises(QuarantineClaimedError, match="not claimed"):
        await store.mark_released(mid, "alice", RELEASE_AS_IS)
    assert (await store.get(mid)).status == HELD  # type: ignore[union-attr]


async def test_a_crashed_claimants_claim_expires(pair: Pair, clock: Clock) -> None:
    first, second = pair
    mid = await first.put(new_message())
    await first.claim(mid, "alice")
    clock.now += CLAIM_STALE_AFTER - 1
    with pytest.raises(QuarantineClaimedError):
        await second.claim(mid, "bob")
    clock.now += 2
    assert (await second.claim(mid, "bob")).claimed_by == "bob"
    # The old claimant can no longer complete: the claim is bob's now.
    with pytest.raises(QuarantineClaimedError, match="being released by bob"):
        await first.mark_released(mid, "alice", RELEASE_AS_IS)
    # Deleting is possible once a claim is stale too.
    clock.now += CLAIM_STALE_AFTER + 1
    await first.delete(mid, "alice")


async def test_release_ledger_lives_as_long_as_its_message(
    pair: Pair,
) -> None:
    store, _ = pair
    old = await store.put(new_message(received_at=100.0))
    new = await store.put(new_message(received_at=300.0))
    for mid in (old, new):
        await store.record_copy(release_key(mid), "bob@example.com")
    await store.record_copy("splitkey", "c1")
    # The split ledger's short retention does not forget who already got a release.
    assert await store.expire_ledger(10**12) == 1
    assert await store.copies_done(release_key(old)) == {"bob@example.com"}
    assert await store.expire(200.0) == 1
    assert await store.copies_done(release_key(old)) == set()
    assert await store.copies_done(release_key(new)) == {"bob@example.com"}


def _v1_database(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO messages (id, received_at, status, mail_from, sender_key, rcpt_tos, "
        "mail_options, client_ip, client_helo, queue_id, subject, size, action, rule, "
        "reason, exposure, message) VALUES ('v1message0000001', 1700000000, 'held', "
        "'alice@example.org', 'alice@example.org', '[\"bob@example.com\"]', '[]', "
        "'127.0.0.1', 'mua.example.org', 'Q1', 'old one', 4, 'quarantine', 'bulk', "
        "'2 external', '{\"visible_external\": 2}', X'41424344')"
    )
    conn.execute("INSERT INTO split_ledger VALUES ('k', 'c', 1700000000)")
    conn.execute("INSERT INTO audit (at, actor, action, target, result, detail) "
                 "VALUES (1700000000, 'alice', 'view', 'v1message0000001', 'ok', '')")  # fmt: skip
    conn.execute("PRAGMA user_version = 1")
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.close()


async def test_a_version_1_file_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "v1.db"
    _v1_database(db)
    store = SqliteStore(db)
    await store.open()
    try:
        got = await store.get("v1message0000001")
        assert got is not None
        assert (got.status, got.subject, got.message, got.rcpt_tos) == (
            HELD, "old one", b"ABCD", ("bob@example.com",),
        )  # fmt: skip
        assert (got.claimed_by, got.claimed_at, got.auth_user) == (None, None, None)
        assert await store.copies_done("k") == {"c"}
        assert [e.actor for e in await store.list_audit()] == ["alice"]
        assert (await store.claim("v1message0000001", "alice")).claimed_by == "alice"
    finally:
        await store.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
    conn.close()
