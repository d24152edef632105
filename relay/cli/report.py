"""``ccguard report --from DAY --to DAY``: the evidence report of a period.

Reads the same configuration and database as the server; writes JSON, HTML
or PDF to standard output or ``--output``.  Senders appear as keyed hashes
(``[logging] hash_key``) unless ``--with-senders`` (internal use only).  Making
a report is audited (actor ``cli:<unix user>``, action ``report``).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relay.admin.figures import Period
from relay.admin.report import Report, ReportSource, gather, parse_day, report_json
from relay.admin.report_render import render_html, render_pdf
from relay.cli.config import load_or_report
from relay.errors import ReportError, StoreError
from relay.observability.redact import Redactor
from relay.quarantine import open_store
from relay.settings import Settings

__all__ = ["register"]

FORMATS = ("html", "pdf", "json")


def _fail(message: str, code: int = 1) -> int:
    print(f"ccguard report: {message}", file=sys.stderr)
    return code


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _period(args: argparse.Namespace) -> Period:
    first = parse_day(args.start)
    last = parse_day(args.end) if args.end else datetime.now(UTC).date()
    return Period(first, last)


async def _gather(settings: Settings, period: Period, with_senders: bool) -> Report:
    store = open_store(settings.quarantine)
    await store.open()
    try:
        org = settings.organisation
        source = ReportSource(
            settings.policy, tuple(org.internal_domains), Redactor.from_settings(settings.logging)
        )
        report = await gather(store, period, source, with_senders=with_senders)
        senders = "clear" if with_senders else "hashed"
        detail = f"from={period.first} to={period.last} senders={senders}"
        await store.add_audit(_actor(), "report", "-", "ok", detail)
        return report
    finally:
        await store.close()


def _render(report: Report, fmt: str) -> bytes:
    if fmt == "json":
        return (json.dumps(report_json(report), indent=2) + "\n").encode()
    if fmt == "html":
        return render_html(report).encode()
    return render_pdf(report)


def _write(body: bytes, output: str | None) -> None:
    if output is None or output == "-":
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
        return
    Path(output).write_bytes(body)


def _report(args: argparse.Namespace) -> int:
    settings = load_or_report(args.config)
    if settings is None:
        return 2
    try:
        period = _period(args)
    except ValueError as exc:
        return _fail(str(exc), 2)
    if args.format == "pdf" and args.output is None and sys.stdout.isatty():
        return _fail("a PDF is not for the terminal: add --output FILE or redirect", 2)
    try:
        report = asyncio.run(_gather(settings, period, args.with_senders))
        _write(_render(report, args.format), args.output)
    except StoreError as exc:
        return _fail(f"quarantine store: {exc}")
    except (ReportError, OSError) as exc:
        return _fail(str(exc))
    return 0


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``report --from DAY [--to DAY] [--format F] [--with-senders] [--output FILE]``."""
    parser = subparsers.add_parser(
        "report",
        help="the evidence report of a period (figures, charts, policy, decisions)",
        description="Write the evidence report of the UTC days FROM..TO (inclusive): messages "
        "held, external addresses protected, top rules, largest exposures prevented, reviewer "
        "decisions and how fast, and the policy in force. No email address is in it: senders "
        "are keyed hashes unless --with-senders.",
        parents=[common],
    )
    parser.add_argument("--from", dest="start", required=True, metavar="DAY", help="2026-11-01")
    parser.add_argument("--to", dest="end", metavar="DAY", help="last day (default: today)")
    parser.add_argument("--format", choices=FORMATS, default="html", help="default: html")
    parser.add_argument(
        "--with-senders", action="store_true", help="senders in clear (internal use only)"
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    parser.set_defaults(func=_report)
