"""``ccguard db copy``: move an SQLite quarantine into PostgreSQL.

Messages, the split ledger, the audit log and the sender self-service tables
(release requests with their approvals, undo-hold timers, used links) go over;
leases and the probe row are live state of running instances and do not.

Decision: the target must be empty, and the whole copy is ONE transaction
holding exclusive locks on the copied tables.  So a copy either lands
completely or not at all (a failure half-way leaves the target empty and the
command can simply be run again), and nothing an instance writes meanwhile
can be mixed in or overwritten.  Running it twice is refused, never merged.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import psycopg

from relay.errors import StoreError
from relay.quarantine.pg import PgStore
from relay.quarantine.pg_conn import PgOptions, build_conninfo, describe
from relay.quarantine.sqlite import SqliteStore

__all__ = ["CopyCounts", "copy_sqlite_to_pg"]

_MESSAGE_COLUMNS = (
    "id", "received_at", "status", "mail_from", "sender_key", "rcpt_tos", "mail_options",
    "client_ip", "client_helo", "queue_id", "subject", "size", "action", "rule", "reason",
    "exposure", "released_at", "released_by", "release_mode", "deleted_at", "deleted_by",
    "claimed_by", "claimed_at", "auth_user", "message",
)  # fmt: skip
_TABLES = {
    "messages": (_MESSAGE_COLUMNS, "rowid"),
    "split_ledger": (("key", "copy_id", "recorded_at"), "key, copy_id"),
    "audit": (("id", "at", "actor", "action", "target", "result", "detail"), "id"),
    "release_requests": (
        ("id", "message_id", "requester", "justification", "created_at", "status",
         "approvals_needed", "decided_at", "decided_by", "comment"),
        "created_at, id",
    ),
    "request_approvals": (("request_id", "reviewer", "at", "comment"), "request_id, reviewer"),
    "delay_timers": (("message_id", "deliver_at", "mode", "status"), "message_id"),
    "used_tokens": (("token_id", "message_id", "action", "used_at"), "token_id"),
}  # fmt: skip
_SELF_SERVICE = ("release_requests", "request_approvals", "delay_timers", "used_tokens")
_BATCH = 200


@dataclass(frozen=True, slots=True)
class CopyCounts:
    """Rows copied per table."""

    messages: int
    ledger: int
    audit: int
    #: Rows of the self-service tables (requests, approvals, undo holds, used links).
    self_service: int = 0


async def copy_sqlite_to_pg(source: Path, url: str, options: PgOptions) -> CopyCounts:
    """Copy every row of the SQLite file ``source`` into the (empty) database ``url``."""
    if not source.is_file():
        raise StoreError(f"quarantine store {source}: no such file")
    sqlite_store = SqliteStore(source)  # brings an older file to the current schema
    await sqlite_store.open()
    await sqlite_store.close()
    target = PgStore(url, options)  # creates / migrates the target schema
    await target.open()
    await target.close()
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        conn = await psycopg.AsyncConnection.connect(build_conninfo(url, options))
        async with conn:
            return await _copy(src, conn, describe(url))
    except (psycopg.Error, sqlite3.Error) as exc:
        raise StoreError(f"db copy to {describe(url)} failed: {exc}") from exc
    finally:
        src.close()


async def _copy(
    src: sqlite3.Connection, conn: psycopg.AsyncConnection[tuple[object, ...]], where: str
) -> CopyCounts:
    counts: dict[str, int] = {}
    async with conn.transaction():
        await conn.execute(f"LOCK TABLE {', '.join(_TABLES)} IN EXCLUSIVE MODE")
        for table in _TABLES:
            cur = await conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")
            row = await cur.fetchone()
            if row is not None and row[0]:
                raise StoreError(
                    f"db copy: the target {where} already holds data ({table} is not "
                    "empty); copy only into a new database"
                )
        for table, (columns, order) in _TABLES.items():
            counts[table] = await _copy_table(src, conn, table, columns, order)
        await conn.execute(
            "SELECT setval(pg_get_serial_sequence('audit', 'id'), "
            "coalesce((SELECT max(id) FROM audit), 0) + 1, false)"
        )
    self_service = sum(counts[table] for table in _SELF_SERVICE)
    return CopyCounts(counts["messages"], counts["split_ledger"], counts["audit"], self_service)


async def _copy_table(
    src: sqlite3.Connection,
    conn: psycopg.AsyncConnection[tuple[object, ...]],
    table: str,
    columns: tuple[str, ...],
    order: str,
) -> int:
    names = ", ".join(columns)
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join(['%s'] * len(columns))})"
    rows = src.execute(f"SELECT {names} FROM {table} ORDER BY {order}")
    total = 0
    async with conn.cursor() as cur:
        while batch := rows.fetchmany(_BATCH):
            await cur.executemany(insert, batch)
            total += len(batch)
    return total
