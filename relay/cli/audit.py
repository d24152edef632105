"""``ccguard audit list``: read the admin audit log from a shell.

Filters as on the audit page: ``--user``, ``--action``, ``--target`` (a message
id), ``--since`` / ``--until`` (``7d``, ``12h``, ``2026-11-01``, ``2026-11-01T08:00``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from relay.admin.api import iso_time
from relay.admin.api_workbench import audit_json
from relay.admin.filters import audit_query
from relay.cli.config import load_or_report
from relay.errors import StoreError
from relay.quarantine import open_store
from relay.quarantine.search import AuditPage
from relay.settings import Settings

__all__ = ["register"]


def _fail(message: str, code: int = 1) -> int:
    print(f"ccguard audit: {message}", file=sys.stderr)
    return code


async def _read(settings: Settings, args: argparse.Namespace) -> AuditPage:
    params = {
        "user": args.user or "", "action": args.action or "", "target": args.target or "",
        "since": args.since or "", "until": args.until or "",
    }  # fmt: skip
    query = audit_query(params, time.time())
    store = open_store(settings.quarantine)
    await store.open()
    try:
        return await store.search_audit(query, limit=args.limit, offset=args.offset)
    finally:
        await store.close()


def _print_table(page: AuditPage) -> None:
    row = "{:<20} {:<20} {:<8} {:<16} {:<14} {}"
    print(row.format("WHEN (UTC)", "USER", "ACTION", "TARGET", "RESULT", "DETAIL"))
    for e in page.items:
        when = (iso_time(e.at) or "")[:19].replace("T", " ")
        print(row.format(when, e.actor, e.action, e.target, e.result, e.detail).rstrip())
    first = page.offset + 1 if page.items else 0
    noun = "entry" if page.total == 1 else "entries"
    print(f"{first}-{page.offset + len(page.items)} of {page.total} {noun}")


def _list(args: argparse.Namespace) -> int:
    settings = load_or_report(args.config)
    if settings is None:
        return 2
    try:
        page = asyncio.run(_read(settings, args))
    except ValueError as exc:
        return _fail(str(exc), code=2)
    except StoreError as exc:
        return _fail(f"quarantine store: {exc}")
    if args.json:
        body = {"items": [audit_json(e) for e in page.items], "total": page.total}
        print(json.dumps(body, indent=2))
    else:
        _print_table(page)
    return 0


#: As the API: larger numbers would overflow the store's integers.
_MAX_NUMBER = 10**9


def _positive(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= _MAX_NUMBER:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {_MAX_NUMBER}")
    return int(text)


def _offset(text: str) -> int:
    if not text.isdigit() or int(text) > _MAX_NUMBER:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 0 to {_MAX_NUMBER}")
    return int(text)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``audit list``."""
    audit = subparsers.add_parser("audit", help="read the admin audit log", parents=[common])
    sub = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", required=True)
    listing = sub.add_parser("list", help="audit entries, newest first", parents=[common])
    listing.add_argument("--user", help="only this user's actions (e.g. alice, cli:root)")
    listing.add_argument("--action", help="only this action (login, view, release, delete, ...)")
    listing.add_argument("--target", metavar="ID", help="only entries about this message")
    listing.add_argument("--since", metavar="WHEN", help="e.g. 7d, 12h, 2026-11-01")
    listing.add_argument("--until", metavar="WHEN", help="e.g. 2026-11-30 (that day included)")
    listing.add_argument("--limit", type=_positive, default=100)
    listing.add_argument("--offset", type=_offset, default=0)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_list)
