"""SIGKILL of the instance that is releasing, right after the upstream took the message.

A release of a message to many recipients is one upstream transaction; from its
250 on, every recipient has the message, and what a later release skips is
what the release ledger says.  The ledger must hold all of them at once (one
commit, right after the 250), not one commit per recipient: a crash between
the first and the last of forty commits left most of them unrecorded, and
the release through the other instance sent them a second copy.

Runs on one SQLite file and on one PostgreSQL database, with two real
``ccguard serve`` processes and a real upstream.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from relay.credentials.users import UserDB
from tests.helpers.admin import PASSWORD
from tests.helpers.instances import (
    start_instance,
    stop_instance,
    wait_ready,
    write_instance,
)
from tests.helpers.kill_upstream import KillingUpstream
from tests.helpers.multi import SharedDatabase, auth, send
from tests.helpers.postgres import PgCluster

RCPTS = [f"guest{n:02d}@example.{'com' if n % 2 else 'net'}" for n in range(40)]
MESSAGE = (
    f"From: Ann <ann@example.org>\r\nTo: {', '.join(RCPTS)}\r\n"
    "Subject: Open day\r\nMessage-ID: <open-day@example.org>\r\n\r\nSee you there.\r\n"
).encode()


@pytest.fixture(params=["sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> SharedDatabase:
    if request.param == "sqlite":
        return SharedDatabase(tmp_path / "shared.db")
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return SharedDatabase(cluster.url(cluster.create_database()), cluster.password)


@pytest.fixture
async def killer(shared: SharedDatabase) -> AsyncIterator[KillingUpstream]:
    up = await KillingUpstream(shared.database, shared.password).start()
    try:
        yield up
    finally:
        await up.stop()


async def test_sigkill_right_after_a_release_was_accepted_then_release_through_b(
    tmp_path: Path, killer: KillingUpstream, shared: SharedDatabase
) -> None:
    UserDB(tmp_path / "users.json").set_password("alice", PASSWORD)
    a, b = (
        write_instance(tmp_path, name, upstream_port=killer.port, database=shared.database,
                       env=shared.env(), split=False, claim_lease=2)  # type: ignore[arg-type]
        for name in ("a", "b")
    )  # fmt: skip
    try:
        for instance in (a, b):
            start_instance(instance)
        for instance in (a, b):
            await asyncio.to_thread(wait_ready, instance)
        reply = await asyncio.to_thread(send, a, MESSAGE, RCPTS)
        assert reply is not None and reply[0] == 250, reply
        msg_id = reply[1].split("held for review as ")[1].split()[0]
        assert a.proc is not None
        killer.arm(a.proc, 1)  # killed at its first word to the upstream after the 250
        async with httpx.AsyncClient(base_url=a.admin_url, auth=auth(), timeout=30) as on_a:
            with pytest.raises(httpx.TransportError):
                await on_a.post(f"/api/quarantine/{msg_id}/release", json={"mode": "as-is"})
        statuses = []
        async with httpx.AsyncClient(base_url=b.admin_url, auth=auth(), timeout=30) as on_b:
            for _ in range(100):  # bounded: A's claim lives 2 s
                resp = await on_b.post(f"/api/quarantine/{msg_id}/release", json={"mode": "as-is"})
                statuses.append(resp.status_code)
                if resp.status_code != 409:
                    break
                await asyncio.sleep(0.1)
        assert statuses[-1] == 200, (statuses, resp.text)
        assert killer.copies == Counter(RCPTS)  # once each: B sent nobody a second copy
        assert killer.ledger_at_kill == set(RCPTS)  # recorded before anything else
    finally:
        stop_instance(a)
        stop_instance(b)
