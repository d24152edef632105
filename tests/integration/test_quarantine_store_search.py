"""Search over messages and the audit log, on a real SQLite file and a real PostgreSQL
database alike (the same answers from both)."""

from __future__ import annotations

import pytest

from relay.quarantine import DELETED, HELD, QuarantineStore
from relay.quarantine.search import AuditQuery, MessageQuery
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


def _raw(subject: str) -> bytes:
    return f"From: a@example.org\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()


async def _seed(store: QuarantineStore) -> dict[str, str]:
    alice = "Alice@" + "example".title() + ".org"
    specs = {
        "alice": (alice, "Grüße an ALLE, ÜBERALL", ("x@example.com",), "bulk", 1e3),
        "malice": ("malice@example.org", "Invoice 100%_off", ("y@mail.example.com",), "bulk", 2e3),
        "bob": ("bob@sales.example.net", "Training", ("z@example.net", "w@example.com"), "xl", 3e3),
        "carol": ("carol@example_org.example", "training dates", ("v@example.net",), None, 4e3),
    }  # fmt: skip
    ids = {}
    for key, (sender, subject, rcpts, rule, at) in specs.items():
        ids[key] = await store.put(
            new_message(
                mail_from=sender, rcpt_tos=rcpts, message=_raw(subject), rule=rule, received_at=at
            )
        )
    return ids


async def _found(store: QuarantineStore, **kw: object) -> list[str]:
    page = await store.search(MessageQuery(**kw))  # type: ignore[arg-type]
    return [m.id for m in page.items]


async def test_sender_substring_and_pattern(store: QuarantineStore) -> None:
    ids = await _seed(store)
    assert await _found(store, sender="alice") == [ids["malice"], ids["alice"]]  # substring
    assert await _found(store, sender="ALICE@example.org") == [ids["malice"], ids["alice"]]
    # sender_address: that sender exactly (the API's and CLI's full-address filter).
    assert await _found(store, sender_address="ALICE@example.org") == [ids["alice"]]
    assert await _found(store, sender_address="lice@example.org") == []
    assert await _found(store, sender="alice*") == [ids["alice"]]  # pattern: whole address
    assert await _found(store, sender="*@example.org") == [ids["malice"], ids["alice"]]
    assert await _found(store, sender="*@*.example.net") == [ids["bob"]]
    assert await _found(store, sender="b?b@*") == [ids["bob"]]
    # "_" and "%" are literal, never wildcards.
    assert await _found(store, sender="*@example_org.example") == [ids["carol"]]
    assert await _found(store, sender="*@example%") == []
    assert await _found(store, sender="e_ample") == []


async def test_subject_is_a_case_insensitive_substring_beyond_ascii(store: QuarantineStore) -> None:
    ids = await _seed(store)
    assert await _found(store, subject="training") == [ids["carol"], ids["bob"]]
    assert await _found(store, subject="GRÜSSE") == []  # ß is not ss: no folding beyond lower()
    assert await _found(store, subject="grüße an alle") == [ids["alice"]]
    assert await _found(store, subject="überall") == [ids["alice"]]  # Ü folded in the database
    assert await _found(store, subject="100%_") == [ids["malice"]]
    assert await _found(store, subject="100%x") == []


async def test_recipient_domain_exact_or_with_subdomains(store: QuarantineStore) -> None:
    ids = await _seed(store)
    assert await _found(store, rcpt_domain="example.com") == [ids["bob"], ids["alice"]]
    assert await _found(store, rcpt_domain="@" + "example".upper() + ".net") == [
        ids["carol"],
        ids["bob"],
    ]
    assert await _found(store, rcpt_domain="*.example.com") == [
        ids["bob"], ids["malice"], ids["alice"],
    ]  # fmt: skip
    assert await _found(store, rcpt_domain="ample.com") == []  # a domain, not a suffix


async def test_rule_status_date_range_combined_with_total_and_paging(
    store: QuarantineStore,
) -> None:
    ids = await _seed(store)
    await store.delete(ids["bob"], "admin")
    assert await _found(store, rule="bulk") == [ids["malice"], ids["alice"]]
    assert await _found(store, since=2000.0, until=4000.0) == [ids["bob"], ids["malice"]]
    assert await _found(store, status=HELD, rcpt_domain="example.net") == [ids["carol"]]
    assert await _found(store, status=DELETED) == [ids["bob"]]
    page = await store.search(MessageQuery(), limit=3, offset=0)
    assert (page.total, len(page.items), page.has_more) == (4, 3, True)
    last = await store.search(MessageQuery(), limit=3, offset=3)
    assert [m.id for m in last.items] == [ids["alice"]] and not last.has_more
    assert MessageQuery(sender="a", rule="r").active() == ("sender", "rule")
    with pytest.raises(ValueError, match="status must be one of"):
        MessageQuery(status="gone")
    with pytest.raises(ValueError):
        await store.search(MessageQuery(), limit=0)


async def test_audit_search_by_user_action_target_and_time(
    store: QuarantineStore, clock: Clock
) -> None:
    for at, actor, action, target in [
        (100.0, "alice", "login", "-"),
        (200.0, "alice", "view", "m1"),
        (300.0, "bob", "release", "m1"),
        (400.0, "sender:3f2a", "request", "m2"),
        (500.0, "alice", "delete", "m2"),
    ]:
        clock.now = at
        await store.add_audit(actor, action, target, "ok", f"at={at:.0f}")

    async def found(limit: int = 100, offset: int = 0, **kw: object) -> list[float]:
        page = await store.search_audit(AuditQuery(**kw), limit=limit, offset=offset)  # type: ignore[arg-type]
        return [e.at for e in page.items]

    assert await found() == [500.0, 400.0, 300.0, 200.0, 100.0]
    assert await found(actor="alice") == [500.0, 200.0, 100.0]
    assert await found(action="release") == [300.0]
    assert await found(target="m2") == [500.0, 400.0]
    assert await found(since=200.0, until=400.0) == [300.0, 200.0]
    assert await found(actor="alice", since=150.0) == [500.0, 200.0]
    assert await found(actor="nobody") == []
    page = await store.search_audit(AuditQuery(), limit=2, offset=2)
    assert (page.total, [e.actor for e in page.items], page.has_more) == (5, ["bob", "alice"], True)
    assert page.items[0].detail == "at=300"
