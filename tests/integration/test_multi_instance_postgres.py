"""Two real ``ccguard serve`` processes on one PostgreSQL database, each with its own ports.

What only PostgreSQL shows: the split action's lease rows after two
overlapping retries.  Everything else two instances must do on one
PostgreSQL database (held through A, listed, shown and released through B;
A and B releasing at once; SIGKILL mid-split, retry through the other; a
killed instance's release claim taken over) is in test_multi_instance.py,
which runs every test on both backends.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from relay.credentials.users import UserDB
from tests.helpers.admin import PASSWORD
from tests.helpers.instances import (
    Instance,
    start_instance,
    stop_instance,
    wait_ready,
    write_instance,
)
from tests.helpers.multi import RCPTS, per_rcpt, send, split_message
from tests.helpers.postgres import PgCluster
from tests.helpers.upstream import RecordingUpstream

ROUNDS = 3


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingUpstream]:
    up = await RecordingUpstream().start()
    try:
        yield up
    finally:
        await up.stop()


@pytest.fixture
def database(pg_cluster: PgCluster) -> str:
    """The URL of a new database for this test (no password in it)."""
    return pg_cluster.url(pg_cluster.create_database())


@pytest.fixture
def splitting(
    tmp_path: Path, upstream: RecordingUpstream, pg_cluster: PgCluster, database: str
) -> Iterator[list[Instance]]:
    """A and B (configured, not started) splitting on one PostgreSQL database."""
    UserDB(tmp_path / "users.json").set_password("alice", PASSWORD)
    instances = [
        write_instance(tmp_path, name, upstream_port=upstream.port, database=database,
                       env={"PGPASSWORD": pg_cluster.password}, claim_lease=2, claim_wait=10)
        for name in ("a", "b")
    ]  # fmt: skip
    try:
        yield instances
    finally:
        for instance in instances:
            stop_instance(instance)


async def _run(instances: list[Instance]) -> None:
    for instance in instances:
        start_instance(instance)
    for instance in instances:
        await asyncio.to_thread(wait_ready, instance)


def _leases(cluster: PgCluster, database: str) -> list[tuple[str | None, int]]:
    with psycopg.connect(database, password=cluster.password) as conn:
        rows = conn.execute("SELECT holder, token FROM leases ORDER BY key").fetchall()
    return [(holder, int(token)) for holder, token in rows]


async def test_concurrent_retries_through_a_and_b_give_each_recipient_one_copy(
    splitting: list[Instance], upstream: RecordingUpstream, pg_cluster: PgCluster, database: str
) -> None:
    a, b = splitting
    await _run(splitting)
    upstream.data_delay = 0.1  # the attempts overlap: one waits for the other's lease
    for n in range(ROUNDS):
        message = split_message(f"pg-twice-{n}")
        replies = await asyncio.gather(
            asyncio.to_thread(send, a, message), asyncio.to_thread(send, b, message)
        )
        assert [r[0] if r else None for r in replies] == [250, 250], replies
    assert per_rcpt([m.rcpt_tos for m in upstream.messages]) == Counter({r: ROUNDS for r in RCPTS})
    # One lease per message, each taken once by A and once by B, each dropped.
    assert _leases(pg_cluster, database) == [(None, 2)] * ROUNDS
