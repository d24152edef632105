"""Two real ``ccguard serve`` processes on one database, each with its own ports.

Every test runs twice: on one SQLite file and on one PostgreSQL database (a
private cluster started by the tests, see tests/helpers/postgres.py).

What an operator running several instances relies on: whatever one instance
holds, the other lists, shows and releases; a release or a split retry is
carried out once whichever instance gets it, also when the instance that
was working on it is killed (SIGKILL) and the client retries through the
other; a login and a logout count on both.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from relay.actions.split import delivered_id
from relay.credentials.users import UserDB
from tests.helpers.admin import PASSWORD
from tests.helpers.instances import (
    Instance,
    start_instance,
    stop_instance,
    wait_ready,
    write_instance,
)
from tests.helpers.kill_upstream import KillingUpstream
from tests.helpers.multi import (
    INTERNAL,
    RCPTS,
    SharedDatabase,
    auth,
    metric,
    per_rcpt,
    send,
    split_message,
)
from tests.helpers.postgres import PgCluster
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import Gate, wait_until

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HOLD_ME = (
    b"From: Ann <ann@example.org>\r\nTo: bob@example.com, carol@example.net\r\n"
    b"Subject: Budget figures\r\nMessage-ID: <hold-1@example.org>\r\n\r\nThe numbers.\r\n"
)
HOLD_RCPTS = ["bob@example.com", "carol@example.net"]


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingUpstream]:
    up = await RecordingUpstream().start()
    try:
        yield up
    finally:
        await up.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> SharedDatabase:
    """The one database A and B share: an SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return SharedDatabase(tmp_path / "shared.db")
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return SharedDatabase(cluster.url(cluster.create_database()), cluster.password)


def _pair(
    folder: Path, upstream_port: int, shared: SharedDatabase, **keys: object
) -> list[Instance]:
    UserDB(folder / "users.json").set_password("alice", PASSWORD)
    return [
        write_instance(folder, name, upstream_port=upstream_port, database=shared.database,
                       env=shared.env(), **keys)  # type: ignore[arg-type]
        for name in ("a", "b")
    ]  # fmt: skip


async def _run(instances: list[Instance]) -> None:
    for instance in instances:
        start_instance(instance)
    for instance in instances:
        await asyncio.to_thread(wait_ready, instance)


@pytest.fixture
async def holding(
    tmp_path: Path, upstream: RecordingUpstream, shared: SharedDatabase
) -> AsyncIterator[list[Instance]]:
    """A and B, with a rule that holds the message for review."""
    instances = _pair(tmp_path, upstream.port, shared, split=False)
    try:
        await _run(instances)
        yield instances
    finally:
        for instance in instances:
            stop_instance(instance)


def _held_id(reply: tuple[int, str] | None) -> str:
    assert reply is not None and reply[0] == 250, reply
    match = re.search(r"held for review as (\S+)", reply[1])
    assert match, reply
    return match.group(1)


async def test_held_through_a_is_listed_shown_and_released_through_b(
    holding: list[Instance], upstream: RecordingUpstream
) -> None:
    a, b = holding
    msg_id = _held_id(await asyncio.to_thread(send, a, HOLD_ME, HOLD_RCPTS))
    async with httpx.AsyncClient(base_url=b.admin_url, auth=auth()) as api:
        listing = (await api.get("/api/quarantine")).json()
        assert [item["id"] for item in listing["items"]] == [msg_id]
        detail = await api.get(f"/api/quarantine/{msg_id}")
        assert detail.status_code == 200 and "Budget figures" in detail.text
        released = await api.post(f"/api/quarantine/{msg_id}/release", json={"mode": "as-is"})
        assert released.status_code == 200, released.text
    [got] = upstream.messages
    assert sorted(got.rcpt_tos) == HOLD_RCPTS and b"The numbers." in got.data
    async with httpx.AsyncClient(base_url=a.admin_url, auth=auth()) as api:
        assert (await api.get(f"/api/quarantine/{msg_id}")).json()["status"] == "released"


async def test_a_and_b_releasing_the_same_message_at_once_deliver_it_once(
    holding: list[Instance], upstream: RecordingUpstream
) -> None:
    a, b = holding
    ids, claim_refusals = [], 0
    for n in range(5):
        message = HOLD_ME.replace(b"hold-1@", f"hold-{n}@".encode())
        ids.append(_held_id(await asyncio.to_thread(send, a, message, HOLD_RCPTS)))
    async with (
        httpx.AsyncClient(base_url=a.admin_url, auth=auth(), timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.admin_url, auth=auth(), timeout=30) as on_b,
    ):
        for msg_id in ids:
            url = f"/api/quarantine/{msg_id}/release"
            replies = await asyncio.gather(
                on_a.post(url, json={"mode": "as-is"}), on_b.post(url, json={"mode": "as-is"})
            )
            assert sorted(r.status_code for r in replies) == [200, 409], [r.text for r in replies]
            # 409 while the other's claim is live, or because it is already released.
            claim_refusals += sum("being released" in r.text for r in replies)
    assert len(upstream.messages) == len(ids)  # each message delivered once
    assert per_rcpt([m.rcpt_tos for m in upstream.messages]) == Counter(
        {r: len(ids) for r in HOLD_RCPTS}
    )
    # Each instance counts its own claims: between them, one taken and one refused per message.
    for event, expected in (("taken", len(ids)), ("refused", claim_refusals), ("taken_over", 0)):
        labels = {"kind": "release", "event": event}
        counts = [await asyncio.to_thread(metric, i, "ccguard_claim_events_total", labels)
                  for i in (a, b)]  # fmt: skip
        assert sum(counts) == expected, (event, counts)


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


async def test_a_login_on_a_holds_on_b_and_a_logout_on_a_ends_it_on_b(
    holding: list[Instance],
) -> None:
    a, b = holding
    async with httpx.AsyncClient(base_url=a.admin_url) as on_a:
        page = await on_a.get("/login")
        form = {"username": "alice", "password": PASSWORD, "csrf_token": _csrf(page.text)}
        assert (await on_a.post("/login", data=form)).status_code == 303
        cookies = dict(on_a.cookies)
        async with httpx.AsyncClient(base_url=b.admin_url, cookies=cookies) as on_b:
            assert (await on_b.get("/quarantine")).status_code == 200  # signed with the shared key
            listing = await on_a.get("/quarantine")
            assert (
                await on_a.post("/logout", data={"csrf_token": _csrf(listing.text)})
            ).status_code == 303
            assert (await on_b.get("/quarantine")).status_code == 303  # to the login form


# -- split -----------------------------------------------------------------


@pytest.fixture
def splitting(
    tmp_path: Path, upstream: RecordingUpstream, shared: SharedDatabase
) -> Iterator[list[Instance]]:
    """A and B (configured, not started), splitting; a short lease so a crash costs 2 s."""
    instances = _pair(tmp_path, upstream.port, shared, claim_lease=2, claim_wait=10)
    try:
        yield instances
    finally:
        for instance in instances:
            stop_instance(instance)


async def test_retry_through_b_after_a_deferred_some_recipients_gives_each_one_copy(
    splitting: list[Instance], upstream: RecordingUpstream
) -> None:
    a, b = splitting
    await _run(splitting)
    message = split_message("defer-1")
    upstream.data_hook = lambda env: (
        "451 4.3.0 Try again later" if "g2@example.net" in env.rcpt_tos else None
    )
    first = await asyncio.to_thread(send, a, message)
    assert first is not None and first[0] == 451
    assert per_rcpt([m.rcpt_tos for m in upstream.messages]) == Counter(RCPTS) - Counter(
        ["g2@example.net"]
    )
    upstream.data_hook = None
    second = await asyncio.to_thread(send, b, message)
    assert second is not None and second[0] == 250
    assert per_rcpt([m.rcpt_tos for m in upstream.messages]) == Counter(RCPTS)


async def test_concurrent_retries_through_a_and_b_give_each_recipient_one_copy(
    splitting: list[Instance], upstream: RecordingUpstream
) -> None:
    a, b = splitting
    await _run(splitting)
    upstream.data_delay = 0.1  # the attempts overlap: one waits for the other's claim
    for n in range(3):
        message = split_message(f"twice-{n}")
        replies = await asyncio.gather(
            asyncio.to_thread(send, a, message), asyncio.to_thread(send, b, message)
        )
        assert [r[0] if r else None for r in replies] == [250, 250], replies
    assert per_rcpt([m.rcpt_tos for m in upstream.messages]) == Counter({r: 3 for r in RCPTS})


@pytest.fixture
async def killer(shared: SharedDatabase) -> AsyncIterator[KillingUpstream]:
    up = await KillingUpstream(shared.database, shared.password).start()
    try:
        yield up
    finally:
        await up.stop()


@pytest.mark.parametrize("kill_after", [1, 2, 4])
async def test_sigkill_of_a_mid_split_then_retry_through_b_duplicates_nobody(
    tmp_path: Path, killer: KillingUpstream, kill_after: int, shared: SharedDatabase
) -> None:
    """A is killed at its next word to the upstream after the 250 for copy ``kill_after``
    (so outside the remaining window, see docs/actions.md); the retry through B
    waits for A's lease to expire, takes over and sends only what is missing."""
    a, b = _pair(tmp_path, killer.port, shared, claim_lease=2, claim_wait=10)
    try:
        await _run([a, b])
        assert a.proc is not None
        killer.arm(a.proc, kill_after)
        message = split_message(f"kill-{kill_after}")
        assert await asyncio.to_thread(send, a, message) is None  # killed mid-split
        served = RCPTS[: kill_after - 1] + (
            INTERNAL if kill_after == 4 else [RCPTS[kill_after - 1]]
        )
        assert {delivered_id(r) for r in served} <= killer.ledger_at_kill
        retry = await asyncio.to_thread(send, b, message)
        assert retry is not None and retry[0] == 250, retry
        assert killer.copies == Counter(RCPTS)  # nobody twice, nobody left out
        taken = {"kind": "split", "event": "taken_over"}
        assert await asyncio.to_thread(metric, b, "ccguard_claim_events_total", taken) == 1
    finally:
        stop_instance(a)
        stop_instance(b)


async def test_a_release_claim_left_by_a_killed_instance_is_taken_over_after_its_lease(
    tmp_path: Path, upstream: RecordingUpstream, shared: SharedDatabase
) -> None:
    """Before: 409 for 600 s.  Now: at most ``claim_lease`` (2 s here) of 409, then B
    releases it and every recipient gets it once."""
    a, b = _pair(tmp_path, upstream.port, shared, split=False, claim_lease=2)
    gate = Gate(first=1)  # A's release stops at DATA, never answered
    try:
        await _run([a, b])
        msg_id = _held_id(await asyncio.to_thread(send, a, HOLD_ME, HOLD_RCPTS))
        upstream.data_gate = gate.hold
        async with httpx.AsyncClient(base_url=a.admin_url, auth=auth(), timeout=30) as on_a:
            doomed = asyncio.create_task(
                on_a.post(f"/api/quarantine/{msg_id}/release", json={"mode": "as-is"})
            )
            await wait_until(lambda: gate.waiting == 1, "A's release reached DATA")
            assert a.proc is not None
            a.proc.kill()
            await asyncio.to_thread(a.proc.wait, 10)
            with pytest.raises(httpx.TransportError):
                await doomed
        statuses = []
        async with httpx.AsyncClient(base_url=b.admin_url, auth=auth(), timeout=30) as on_b:
            for _ in range(100):  # bounded: 2 s of lease, polled
                resp = await on_b.post(f"/api/quarantine/{msg_id}/release", json={"mode": "as-is"})
                statuses.append(resp.status_code)
                if resp.status_code != 409:
                    break
                await asyncio.sleep(0.1)
        assert statuses[-1] == 200 and set(statuses[:-1]) <= {409}, statuses
        [got] = upstream.messages  # B's delivery; A's never completed
        assert sorted(got.rcpt_tos) == HOLD_RCPTS
        counted = {
            event: await asyncio.to_thread(
                metric, b, "ccguard_claim_events_total", {"kind": "release", "event": event}
            )
            for event in ("taken", "taken_over", "refused")
        }
        assert counted == {"taken": 1, "taken_over": 1, "refused": len(statuses) - 1}, counted
    finally:
        stop_instance(a)
        stop_instance(b)
