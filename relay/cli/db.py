"""``ccguard db migrate|status|copy``: the quarantine database, for operators.

``ccguard serve`` migrates the schema itself when it starts; ``db migrate``
is for operators who prefer to do it explicitly (before rolling out a new
release to several instances).  ``db status`` changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
from pathlib import Path
from typing import Any

from relay.cli.config import load_or_report
from relay.errors import StoreError
from relay.quarantine import open_store
from relay.quarantine.factory import is_postgres, pg_options
from relay.quarantine.pg import pg_schema_version
from relay.quarantine.pg_conn import describe
from relay.quarantine.pg_copy import copy_sqlite_to_pg
from relay.quarantine.pg_schema import SCHEMA_VERSION as PG_SCHEMA_VERSION
from relay.quarantine.sqlite_schema import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from relay.settings import QuarantineSettings

__all__ = ["register"]


async def _version(settings: QuarantineSettings) -> tuple[str, int | None, int]:
    """(where, version found or None if no database yet, version this ccguard needs)."""
    database = settings.database.strip()
    if is_postgres(database):
        return (
            describe(database),
            await pg_schema_version(database, pg_options(settings)),
            (PG_SCHEMA_VERSION),
        )
    path = Path(database).expanduser()
    if not path.is_file():
        return str(path), None, SQLITE_SCHEMA_VERSION
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreError(f"quarantine store {path}: status failed: {exc}") from exc
    return str(path), found, SQLITE_SCHEMA_VERSION


async def _migrate(settings: QuarantineSettings) -> int:
    where, before, needed = await _version(settings)
    store = open_store(settings)
    await store.open()
    await store.close()
    print(f"{where}: schema version {needed} (was {before or 0})")
    return 0


async def _status(settings: QuarantineSettings) -> int:
    where, found, needed = await _version(settings)
    if found is None:
        print(f"{where}: no database yet (ccguard serve or db migrate creates it)")
        return 1
    state = "current" if found == needed else f"needs migrating to {needed}"
    print(f"{where}: schema version {found} ({state})")
    if found != needed:
        return 1
    store = open_store(settings, migrate=False)
    await store.open()
    try:
        stats = await store.stats()
    finally:
        await store.close()
    print(" ".join(f"{status}={count}" for status, count in stats.counts.items()))
    return 0


async def _copy(settings: QuarantineSettings, args: argparse.Namespace) -> int:
    if not is_postgres(args.to):
        print("ccguard db copy: --to must be a postgresql:// URL", file=sys.stderr)
        return 2
    counts = await copy_sqlite_to_pg(Path(args.source), args.to, pg_options(settings))
    print(
        f"copied {counts.messages} message(s), {counts.ledger} ledger row(s), "
        f"{counts.audit} audit entr{'y' if counts.audit == 1 else 'ies'}, "
        f"{counts.self_service} self-service row(s) to {describe(args.to)}"
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    settings = load_or_report(args.config)
    if settings is None:
        return 2
    try:
        if args.db_command == "copy":
            return asyncio.run(_copy(settings.quarantine, args))
        action = _migrate if args.db_command == "migrate" else _status
        return asyncio.run(action(settings.quarantine))
    except StoreError as exc:
        print(f"ccguard db {args.db_command}: {exc}", file=sys.stderr)
        return 1


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``db migrate``, ``db status`` and ``db copy``."""
    db = subparsers.add_parser("db", help="the quarantine database: migrate, status, copy")
    sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    sub.add_parser(
        "migrate", help="create or upgrade the schema of [quarantine] database", parents=[common]
    ).set_defaults(func=_run)
    sub.add_parser(
        "status", help="schema version and message counts (exit 1: not current)", parents=[common]
    ).set_defaults(func=_run)
    copy = sub.add_parser(
        "copy",
        help="copy an SQLite quarantine into an EMPTY PostgreSQL database (one transaction)",
        parents=[common],
    )
    copy.add_argument("--from", dest="source", required=True, metavar="SQLITE_FILE")
    copy.add_argument("--to", required=True, metavar="POSTGRESQL_URL")
    copy.set_defaults(func=_run)
