"""The quarantine store, on a real SQLite file and a real PostgreSQL database alike:
messages, listing, decisions, ledger, audit."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from relay.errors import QuarantineNotFound, QuarantineStateError, StoreError
from relay.quarantine import (
    DELETED,
    HELD,
    RELEASE_AS_IS,
    RELEASE_REWRITE,
    RELEASED,
    MessageSummary,
    QuarantineStore,
    SqliteStore,
    StoredMessage,
)
from tests.helpers.quarantine_store import RAW, Clock, new_message
from tests.integration.conftest import StoreFactory


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(make_store: StoreFactory, clock: Clock) -> QuarantineStore:
    s = make_store(clock=clock)
    await s.open()
    return s


async def test_is_a_quarantine_store_and_creates_directory(store: QuarantineStore) -> None:
    assert isinstance(store, QuarantineStore)
    if isinstance(store, SqliteStore):
        assert store.path.is_file()


async def test_round_trip_every_field_with_8bit_bytes(store: QuarantineStore) -> None:
    mid = await store.put(new_message())
    assert len(mid) >= 16
    got = await store.get(mid)
    assert got == StoredMessage(
        id=mid,
        received_at=1_700_000_000.5,
        status=HELD,
        mail_from="alice@example.org",
        rcpt_tos=("bob@example.com", "carol@example.net"),
        mail_options=("SIZE=1234", "BODY=8BITMIME"),
        client_ip="127.0.0.1",
        client_helo="mua.example.org",
        queue_id="Q1a2b3c",
        subject="Grüße to all",
        size=len(RAW),
        action="quarantine",
        rule="bulk-external",
        reason="2 external addresses visible",
        exposure={"visible_external": 2, "per_header": {"to": 2}, "header_too_large": False},
        message=RAW,
    )


async def test_defaults_null_sender_and_no_rule(store: QuarantineStore, clock: Clock) -> None:
    mid = await store.put(new_message(mail_from="", rule=None, received_at=None, message=b"x"))
    got = await store.get(mid)
    assert got is not None
    assert (got.mail_from, got.rule, got.subject, got.received_at) == ("", None, "", clock.now)


async def test_ids_are_unique_and_unknown_id_is_none(store: QuarantineStore) -> None:
    ids = {await store.put(new_message()) for _ in range(20)}
    assert len(ids) == 20
    assert await store.get("no-such-id-000000") is None


async def test_list_newest_first_with_total_and_paging(store: QuarantineStore) -> None:
    ids = [await store.put(new_message(received_at=1000.0 + i)) for i in range(5)]
    page = await store.list(limit=2)
    assert [m.id for m in page.items] == [ids[4], ids[3]]
    assert (page.total, page.has_more) == (5, True)
    last = await store.list(limit=2, offset=4)
    assert [m.id for m in last.items] == [ids[0]]
    assert not last.has_more
    assert all(type(m) is MessageSummary for m in page.items)  # no bytes in listings


async def test_list_filters(store: QuarantineStore) -> None:
    a = await store.put(new_message(mail_from="Alice@" + "example.org".capitalize(), rule="r1"))
    b = await store.put(new_message(mail_from="bob@sales.example.com", rule="r2"))
    c = await store.put(new_message(mail_from="carol@example.org", rule="r1"))
    await store.delete(c, "admin")

    async def ids(**kw: str) -> set[str]:
        return {m.id for m in (await store.list(**kw)).items}  # type: ignore[arg-type]

    assert await ids(rule="r1") == {a, c}
    assert await ids(rule="r1", status=HELD) == {a}
    assert await ids(status=DELETED) == {c}
    assert await ids(sender="alice@" + "example".upper() + ".org") == {a}
    assert await ids(sender="example.org") == {a, c}
    assert await ids(sender="example.com") == set()  # domain match is exact, not suffix
    assert await ids(sender="sales.example.com") == {b}
    assert (await store.list(rule="nope")).total == 0


async def test_list_rejects_bad_arguments(store: QuarantineStore) -> None:
    with pytest.raises(ValueError, match="status must be one of"):
        await store.list(status="gone")
    with pytest.raises(ValueError):
        await store.list(limit=0)


async def test_release_once(store: QuarantineStore, clock: Clock) -> None:
    mid = await store.put(new_message())
    clock.now = 1_700_000_500.0
    await store.claim(mid, "admin")
    released = await store.mark_released(mid, "admin", RELEASE_REWRITE)
    assert (released.status, released.released_at) == (RELEASED, 1_700_000_500.0)
    assert (released.released_by, released.release_mode) == ("admin", RELEASE_REWRITE)
    assert (released.claimed_by, released.claimed_at) == (None, None)
    assert released.message == RAW
    with pytest.raises(QuarantineStateError, match="already released") as info:
        await store.mark_released(mid, "other", RELEASE_AS_IS)
    assert info.value.status == RELEASED
    with pytest.raises(QuarantineStateError, match=r"cannot delete .* already released"):
        await store.delete(mid, "other")
    again = await store.get(mid)
    assert again is not None and again.released_by == "admin"


async def test_delete_wipes_bytes_keeps_metadata(store: QuarantineStore, clock: Clock) -> None:
    mid = await store.put(new_message())
    await store.put(new_message(message=b"Subject: kept\r\n\r\nKEPT-BODY-MARKER\r\n"))
    await store.delete(mid, "admin")
    got = await store.get(mid)
    assert got is not None
    assert (got.status, got.message, got.deleted_by, got.deleted_at) == (
        DELETED, b"", "admin", clock.now,
    )  # fmt: skip
    assert got.size == len(RAW) and got.subject == "Grüße to all"
    with pytest.raises(QuarantineStateError, match="already deleted"):
        await store.mark_released(mid, "admin", RELEASE_AS_IS)
    if not isinstance(store, SqliteStore):
        return  # PostgreSQL: the row's bytes are NULL; VACUUM reclaims the old version
    # The bytes are really gone from the file (secure_delete zeroes freed pages).
    await store.close()
    marker = b"caf\xe9 \xc3\xa9t\xc3\xa9"
    on_disk = store.path.read_bytes()
    assert marker not in on_disk
    assert b"KEPT-BODY-MARKER" in on_disk


async def test_missing_id_and_bad_mode(store: QuarantineStore) -> None:
    with pytest.raises(QuarantineNotFound, match="no quarantined message"):
        await store.mark_released("missing", "admin", RELEASE_AS_IS)
    with pytest.raises(QuarantineNotFound):
        await store.delete("missing", "admin")
    mid = await store.put(new_message())
    with pytest.raises(ValueError, match="release mode"):
        await store.mark_released(mid, "admin", "sideways")
    assert issubclass(QuarantineNotFound, StoreError)
    assert issubclass(QuarantineStateError, StoreError)


async def test_expire_and_stats(store: QuarantineStore) -> None:
    old_held = await store.put(new_message(received_at=100.0))
    old_rel = await store.put(new_message(received_at=150.0))
    await store.claim(old_rel, "admin")
    await store.mark_released(old_rel, "admin", RELEASE_AS_IS)
    new_held = await store.put(new_message(received_at=300.0))
    stats = await store.stats()
    assert dict(stats.counts) == {HELD: 2, RELEASED: 1, DELETED: 0}
    assert (stats.held, stats.oldest_held_at) == (2, 100.0)
    assert await store.expire(200.0) == 2
    assert await store.get(old_held) is None and await store.get(old_rel) is None
    assert await store.get(new_held) is not None
    stats = await store.stats()
    assert (stats.held, stats.oldest_held_at) == (1, 300.0)
    assert await store.expire(200.0) == 0


async def test_stats_of_empty_store(store: QuarantineStore) -> None:
    stats = await store.stats()
    assert dict(stats.counts) == {HELD: 0, RELEASED: 0, DELETED: 0}
    assert stats.oldest_held_at is None


async def test_check_writable_passes(store: QuarantineStore) -> None:
    await store.check_writable()
    await store.check_writable()


async def test_split_ledger(store: QuarantineStore, clock: Clock) -> None:
    assert await store.copies_done("k1") == set()
    await store.record_copy("k1", "c1")
    await store.record_copy("k1", "c1")  # idempotent
    clock.now += 10
    await store.record_copy("k1", "c2")
    await store.record_copy("k2", "c1")
    assert await store.copies_done("k1") == {"c1", "c2"}
    assert await store.expire_ledger(clock.now) == 1  # only k1/c1 is older
    assert await store.copies_done("k1") == {"c2"}
    assert await store.copies_done("k2") == {"c1"}


async def test_ledger_write_commits_all_entries_of_a_copy_together(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "q.db", busy_timeout=0.2)
    await store.open()
    locker = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    try:
        await store.record_copies("k", ["d-a", "d-b"])
        await store.record_copies("k", ["d-b", "d-c"])  # d-b again: harmless
        assert await store.copies_done("k") == {"d-a", "d-b", "d-c"}
        locker.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="ledger write failed"):
            await store.record_copies("k", ["d-x", "d-y"])
        locker.rollback()
        assert await store.copies_done("k") == {"d-a", "d-b", "d-c"}  # neither, not one
    finally:
        locker.close()
        await store.close()


async def test_audit_newest_first_and_by_target(store: QuarantineStore, clock: Clock) -> None:
    await store.add_audit("ann", "release", "m1", "ok", "mode=as-is")
    clock.now += 1
    await store.add_audit("ben", "delete", "m2", "ok")
    await store.add_audit("ben", "release", "m1", "error", "already released")
    entries = await store.list_audit()
    assert [(e.actor, e.action, e.target, e.result) for e in entries] == [
        ("ben", "release", "m1", "error"),
        ("ben", "delete", "m2", "ok"),
        ("ann", "release", "m1", "ok"),
    ]
    assert entries[2].detail == "mode=as-is" and entries[2].at == 1_700_000_100.0
    assert [e.result for e in await store.list_audit(target="m1")] == ["error", "ok"]
    assert len(await store.list_audit(limit=1)) == 1


async def test_use_after_close_is_store_error(store: QuarantineStore) -> None:
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.put(new_message())


async def test_data_survives_reopen(make_store: StoreFactory) -> None:
    first = make_store()
    await first.open()
    mid = await first.put(new_message())
    await first.record_copy("k", "c")
    await first.close()
    second = make_store()
    await second.open()
    got = await second.get(mid)
    assert got is not None and got.message == RAW
    assert await second.copies_done("k") == {"c"}


async def test_concurrent_puts_from_two_stores_on_one_file(make_store: StoreFactory) -> None:
    # Two stores = two connections (pools), as two worker processes would have.
    a, b = make_store(), make_store()
    await a.open()
    await b.open()
    ids = await asyncio.gather(
        *(s.put(new_message(received_at=float(i))) for i, s in enumerate([a, b] * 25))
    )
    assert len(set(ids)) == 50
    assert (await a.list(limit=100)).total == 50
    assert (await b.stats()).held == 50


async def test_database_files_are_private_to_the_owner(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "state"
    store = SqliteStore(folder / "q.db")
    await store.open()
    try:
        await store.put(new_message())
        modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    finally:
        await store.close()
    assert (folder.stat().st_mode & 0o777) == 0o700
    assert modes["q.db"] == 0o600
    assert all(mode == 0o600 for name, mode in modes.items() if name.startswith("q.db"))
