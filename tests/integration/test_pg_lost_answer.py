"""PostgreSQL: a held message whose INSERT committed but whose answer was lost.

Before: the store saw a dropped connection, the relay answered ``451`` and the
client's retry held a second copy of the message.  Now the store sends the
INSERT once more with the same id (idempotent) and the client gets ``250``
for one held copy.  Real ``ccguard serve``, real private PostgreSQL behind a
proxy that drops the connection right after the server answered the INSERT.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from tests.helpers.instances import start_instance, stop_instance, wait_ready, write_instance
from tests.helpers.multi import send
from tests.helpers.pg_cut_proxy import CutProxy
from tests.helpers.postgres import PgCluster
from tests.helpers.upstream import RecordingUpstream

HOLD_ME = (
    b"From: Ann <ann@example.org>\r\nTo: bob@example.com, carol@example.net\r\n"
    b"Subject: Budget figures\r\nMessage-ID: <lost-answer@example.org>\r\n\r\nThe numbers.\r\n"
)
RCPTS = ["bob@example.com", "carol@example.net"]


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingUpstream]:
    up = await RecordingUpstream().start()
    try:
        yield up
    finally:
        await up.stop()


@pytest.fixture
async def proxy(pg_cluster: PgCluster) -> AsyncIterator[CutProxy]:
    cut = await CutProxy(pg_cluster.port).start()
    try:
        yield cut
    finally:
        await cut.stop()


def _held(pg_cluster: PgCluster, dbname: str) -> list[tuple[str, str]]:
    with psycopg.connect(pg_cluster.url(dbname), password=pg_cluster.password) as conn:
        return [
            (str(r[0]), str(r[1]))
            for r in conn.execute("SELECT id, status FROM messages ORDER BY received_at")
        ]


async def test_a_lost_answer_to_the_insert_gives_250_and_one_held_copy(
    tmp_path: Path, pg_cluster: PgCluster, proxy: CutProxy, upstream: RecordingUpstream
) -> None:
    dbname = pg_cluster.create_database()
    url = pg_cluster.url(dbname).replace(f":{pg_cluster.port}/", f":{proxy.port}/")
    instance = write_instance(
        tmp_path, "a", upstream_port=upstream.port, database=url, split=False,
        env={"PGPASSWORD": pg_cluster.password},
    )  # fmt: skip
    try:
        start_instance(instance)
        await asyncio.to_thread(wait_ready, instance)
        proxy.arm(b"INSERT INTO messages")
        reply = await asyncio.to_thread(send, instance, HOLD_ME, RCPTS)
        assert proxy.cuts == 1  # the INSERT's answer was lost
        assert reply is not None and reply[0] == 250 and "held for review" in reply[1], reply
        held = await asyncio.to_thread(_held, pg_cluster, dbname)
        assert held == [(reply[1].split("held for review as ")[1].split()[0], "held")]
    finally:
        stop_instance(instance)
