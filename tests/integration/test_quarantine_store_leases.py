"""Leases with fencing on a real SQLite file and a real PostgreSQL database, each shared
by two stores (two processes' view).

The split action serialises the attempts of one message with these; a
crashed holder's lease expires and is taken over, and a holder that lost
its lease cannot write to the ledger any more.
"""

from __future__ import annotations

import asyncio

import pytest

from relay.errors import LeaseLostError, QuarantineClaimedError
from relay.quarantine import QuarantineStore
from tests.helpers.quarantine_store import Clock, new_message
from tests.integration.conftest import StoreFactory

TTL = 30.0
KEY = "split:0123456789abcdef"


@pytest.fixture
def clock() -> Clock:
    return Clock()


Pair = tuple[QuarantineStore, QuarantineStore]


@pytest.fixture
async def pair(make_store: StoreFactory, clock: Clock) -> Pair:
    """Two stores (two connections) on one database, as two instances have."""
    first, second = make_store(clock=clock), make_store(clock=clock)
    await first.open()
    await second.open()
    return first, second


async def test_simultaneous_acquires_have_exactly_one_winner(
    pair: Pair,
) -> None:
    first, second = pair
    for n in range(20):
        key = f"{KEY}-{n}"
        leases = await asyncio.gather(
            first.acquire_lease(key, "holder-a", TTL), second.acquire_lease(key, "holder-b", TTL)
        )
        assert sum(lease is not None for lease in leases) == 1, leases


async def test_a_live_lease_blocks_others_until_dropped_then_the_token_grows(
    pair: Pair, clock: Clock
) -> None:
    first, second = pair
    lease = await first.acquire_lease(KEY, "holder-a", TTL)
    assert lease is not None and (lease.token, lease.taken_over) == (1, False)
    clock.now += TTL - 1
    assert await second.acquire_lease(KEY, "holder-b", TTL) is None
    await first.drop_lease(lease)
    after = await second.acquire_lease(KEY, "holder-b", TTL)
    assert after is not None and (after.token, after.taken_over) == (2, False)


async def test_renewal_keeps_the_lease_alive(pair: Pair, clock: Clock) -> None:
    first, second = pair
    lease = await first.acquire_lease(KEY, "holder-a", TTL)
    assert lease is not None
    for _ in range(3):
        clock.now += TTL - 1
        assert await first.renew_lease(lease, TTL)
        assert await second.acquire_lease(KEY, "holder-b", TTL) is None


async def test_an_expired_lease_is_taken_over_and_fences_out_its_old_holder(
    pair: Pair, clock: Clock
) -> None:
    first, second = pair
    old = await first.acquire_lease(KEY, "holder-a", TTL)
    assert old is not None
    await first.record_copies_fenced(old, ["d:g1@example.com"])
    clock.now += TTL  # the holder crashed (or stalled) and did not renew
    new = await second.acquire_lease(KEY, "holder-b", TTL)
    assert new is not None and (new.token, new.taken_over) == (2, True)
    assert await second.copies_done(KEY) == {"d:g1@example.com"}  # the first one's work
    assert not await first.renew_lease(old, TTL)
    with pytest.raises(LeaseLostError):
        await first.record_copies_fenced(old, ["d:g2@example.com", "d:g3@example.com"])
    await second.record_copies_fenced(new, ["d:g2@example.com"])
    await first.drop_lease(old)  # no-op: not theirs any more
    assert await second.acquire_lease(KEY, "holder-c", TTL) is None
    assert await second.copies_done(KEY) == {"d:g1@example.com", "d:g2@example.com"}


async def test_an_expired_lease_nobody_took_may_still_be_used_by_its_holder(
    pair: Pair, clock: Clock
) -> None:
    first, _ = pair
    lease = await first.acquire_lease(KEY, "holder-a", TTL)
    assert lease is not None
    clock.now += TTL * 2
    await first.record_copies_fenced(lease, ["d:g1@example.com"])  # the fence is the token
    assert await first.renew_lease(lease, TTL)


async def test_ledger_purge_forgets_old_leases(pair: Pair, clock: Clock) -> None:
    first, second = pair
    lease = await first.acquire_lease(KEY, "holder-a", TTL)
    assert lease is not None
    await first.drop_lease(lease)
    await first.expire_ledger(clock.now)
    again = await second.acquire_lease(KEY, "holder-b", TTL)
    assert again is not None and again.token == 1


async def test_a_renewed_release_claim_holds_and_an_unrenewed_one_is_taken_over(
    pair: Pair, clock: Clock
) -> None:
    first, second = pair
    mid = await first.put(new_message())
    await first.claim(mid, "alice", TTL)
    clock.now += TTL - 1
    assert await first.renew_claim(mid, "alice")
    clock.now += TTL - 1
    with pytest.raises(QuarantineClaimedError):
        await second.claim(mid, "bob", TTL)
    clock.now += TTL  # alice's process died: no renewal
    taken = await second.claim(mid, "bob", TTL)
    assert taken.claimed_by == "bob"
    assert not await first.renew_claim(mid, "alice")


async def test_without_an_injected_clock_leases_expire_by_the_real_clock(
    make_store: StoreFactory,
) -> None:
    # Production stores: on PostgreSQL "now" is the database's clock.
    first, second = make_store(), make_store()
    await first.open()
    await second.open()
    live = await first.acquire_lease(KEY, "holder-a", 3600)
    assert live is not None
    assert await second.acquire_lease(KEY, "holder-b", 3600) is None
    assert await first.renew_lease(live, -1)  # now expired (a stalled holder)
    taken = await second.acquire_lease(KEY, "holder-b", 3600)
    assert taken is not None and (taken.token, taken.taken_over) == (2, True)
    with pytest.raises(LeaseLostError):
        await first.record_copies_fenced(live, ["d:g1@example.com"])
    assert await second.copies_done(KEY) == set()


async def test_without_an_injected_clock_a_release_claim_is_renewed_by_the_real_clock(
    make_store: StoreFactory,
) -> None:
    first, second = make_store(), make_store()
    await first.open()
    await second.open()
    mid = await first.put(new_message())
    before = await first.claim(mid, "alice")
    assert await first.renew_claim(mid, "alice")
    renewed = await second.get(mid)
    assert renewed is not None and before.claimed_at is not None
    assert renewed.claimed_at is not None and renewed.claimed_at >= before.claimed_at
    with pytest.raises(QuarantineClaimedError):
        await second.claim(mid, "bob")
    assert not await second.renew_claim(mid, "bob")
