"""``ccguard quarantine list|show|release|delete|purge``: review held messages from a shell.

Works on the same configuration and database as the running server (SQLite
in WAL mode allows that).  Every action is audited with the actor
``cli:<unix user>``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, TextIO

from relay.admin.api import iso_time, summary_json
from relay.admin.bulk import BULK_DELETE, BULK_RELEASE_HIDDEN
from relay.admin.filters import exact_sender, message_query
from relay.admin.preview import explain_exposure
from relay.admin.releasing import ReleaseDeferred
from relay.admin.review import MODE_AS_IS, MODE_HIDDEN, Releaser, Review, Viewed, public_mode
from relay.cli.bulk import add_filter_args, has_filter, run_bulk_command
from relay.cli.config import load_or_report
from relay.codes import Reply
from relay.errors import (
    CalendarAttendeesVisible,
    FourEyesError,
    QuarantineClaimedError,
    QuarantineNotFound,
    QuarantineStateError,
    StoreError,
    UpstreamError,
)
from relay.quarantine import open_store
from relay.quarantine.store import STATUSES
from relay.settings import Settings

__all__ = ["parse_age", "register"]

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm])\s*$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60}
Command = Callable[[Review, argparse.Namespace, Settings, AsyncExitStack], Awaitable[int]]


def parse_age(text: str) -> float:
    """``30d`` / ``12h`` / ``90m`` → seconds; raises ValueError otherwise."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an age like 30d, 12h or 90m")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class _QuietLog:
    """The CLI's log: the audit table has the record; nothing is printed."""

    def info(self, event: str, **kw: Any) -> None:
        return None


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


def _fail(message: str, code: int = 1) -> int:
    print(f"ccguard quarantine: {message}", file=sys.stderr)
    return code


_LIST_FILTERS = ("status", "sender", "subject", "rcpt_domain", "rule", "since", "until")


async def _list(review: Review, args: argparse.Namespace, _: Settings, __: Any) -> int:
    params = {name: getattr(args, name) or "" for name in _LIST_FILTERS}
    try:
        query = exact_sender(message_query(params, time.time()))
    except ValueError as exc:
        return _fail(str(exc), 2)
    page = await review.store.search(query, limit=max(1, args.limit))
    if args.json:
        print(json.dumps([summary_json(item) for item in page.items], indent=2))
        return 0
    row = "{:<26} {:<20} {:<8} {:>4} {:>4} {:<16} {:>8}  {:<28} {}"
    print(row.format("ID", "RECEIVED", "STATUS", "EXT", "DOM", "RULE", "SIZE", "SENDER", "SUBJECT"))
    for m in page.items:
        received = (iso_time(m.received_at) or "")[:19]
        ext, dom = m.exposure.get("visible_external", 0), m.exposure.get("external_domains", 0)
        sender, rule = m.mail_from or "<>", m.rule or "-"
        print(row.format(m.id, received, m.status, ext, dom, rule, m.size, sender, m.subject))
    print(f"{len(page.items)} of {page.total} message(s)")
    return 0


def _print_message(viewed: Viewed) -> None:
    stored, preview = viewed.message, viewed.preview
    print(f"Id:         {stored.id}")
    print(f"Status:     {stored.status}")
    if stored.status == "released":
        when, mode = iso_time(stored.released_at), public_mode(stored.release_mode)
        print(f"Released:   {when} by {stored.released_by} ({mode})")
    if stored.status == "deleted":
        print(f"Deleted:    {iso_time(stored.deleted_at)} by {stored.deleted_by}")
    print(f"Received:   {iso_time(stored.received_at)} from {stored.client_ip or '?'}")
    print(f"Sender:     {stored.mail_from or '<>'}")
    print(f"AUTH user:  {stored.auth_user or '-'}")
    print(f"Subject:    {stored.subject}")
    print(f"Size:       {stored.size} bytes")
    print(f"Rule:       {stored.rule or '-'}")
    print()
    for line in explain_exposure(stored.exposure, stored.rule, stored.reason):
        print(line)
    print(f"\nRecipients ({len(stored.rcpt_tos)}):")
    for rcpt in stored.rcpt_tos:
        print(f"  {rcpt}")
    if preview is not None:
        for note in preview.notes:
            print(f"\nNote: {note}")
        print("\n--- text" + (" (from HTML)" if preview.from_html else "") + " ---")
        print(preview.text)


async def _show(review: Review, args: argparse.Namespace, _: Settings, __: Any) -> int:
    viewed = await review.view(args.id, _actor())
    if args.json:
        data = summary_json(viewed.message)
        data["rcpt_tos"] = list(viewed.message.rcpt_tos)
        data["text_preview"] = viewed.preview.text if viewed.preview else ""
        print(json.dumps(data, indent=2))
    else:
        _print_message(viewed)
    return 0


async def _make_releaser(settings: Settings, stack: AsyncExitStack) -> Releaser:
    # Imported here: only `release` needs the upstream client and the rewrite code.
    from relay.actions.release import QuarantineReleaser
    from relay.inspect.domains import DomainMatcher
    from relay.upstream import UpstreamClient

    hostname = settings.upstream.helo_name or settings.smtp.hostname
    client = UpstreamClient(settings.upstream, local_hostname=hostname)
    stack.push_async_callback(client.close)
    matcher = DomainMatcher(settings.organisation.internal_domains)
    return QuarantineReleaser(client, matcher)


async def _release(
    review: Review, args: argparse.Namespace, settings: Settings, stack: AsyncExitStack
) -> int:
    if (refusal := _bulk_refusal(args, "release")) is not None:
        return refusal
    review.releaser = await _make_releaser(settings, stack)
    if args.id is None:
        return await run_bulk_command(review, args, BULK_RELEASE_HIDDEN, _actor())
    mode = MODE_HIDDEN if args.hidden else MODE_AS_IS
    try:
        report = await review.release(args.id, mode, _actor())
    except ReleaseDeferred as exc:
        _print_recipients("deferred", exc.report.deferred, sys.stderr)
        return _fail(f"message {args.id} {exc.report.still_held_text()}")
    except CalendarAttendeesVisible as exc:
        return _fail(str(exc), code=2)
    except UpstreamError as exc:
        return _fail(f"the upstream did not accept the message ({exc.reply}); it is still held")
    how = "with external recipients hidden" if args.hidden else "as sent"
    said = f"upstream said: {report.reply}" if report.reply else "nothing left to deliver"
    print(f"released {args.id} {how}; {said}")
    if report.refused:
        print(report.refused_text() + ":")
        _print_recipients("refused", report.refused, sys.stdout)
    return 0


def _print_recipients(what: str, replies: Mapping[str, Reply | None], out: TextIO) -> None:
    for rcpt, reply in replies.items():
        print(f"  {what}: {rcpt} ({reply or 'on an earlier attempt'})", file=out)


def _bulk_refusal(args: argparse.Namespace, what: str) -> int | None:
    """The usage error for an id given with filters, or neither, or bulk as-is; else None."""
    if args.id is not None and has_filter(args):
        return _fail(f"give a message id or filters, not both, to {what}", code=2)
    if args.id is None and not has_filter(args):
        return _fail(
            f"give a message id, or filters such as --rule R --older-than 1h, to {what}", 2
        )
    if args.id is None and what == "release" and not args.hidden:
        return _fail("releasing by filter needs --hidden (release as sent one at a time)", 2)
    return None


async def _delete(review: Review, args: argparse.Namespace, _: Settings, __: Any) -> int:
    if (refusal := _bulk_refusal(args, "delete")) is not None:
        return refusal
    if args.id is None:
        return await run_bulk_command(review, args, BULK_DELETE, _actor())
    await review.delete(args.id, _actor())
    print(f"deleted {args.id}")
    return 0


async def _purge(review: Review, args: argparse.Namespace, _: Settings, __: Any) -> int:
    count = await review.purge(time.time() - args.older_than, _actor())
    print(f"purged {count} message(s) older than {args.older_than / 86400:g} days")
    return 0


async def _run(command: Command, args: argparse.Namespace, settings: Settings) -> int:
    async with AsyncExitStack() as stack:
        store = open_store(settings.quarantine)
        await store.open()
        stack.push_async_callback(store.close)
        review = Review(store, None, _QuietLog(), claim_lease=settings.quarantine.claim_lease)
        review.as_is_guard = _four_eyes_guard(review, settings)
        try:
            return await command(review, args, settings, stack)
        except FourEyesError as exc:
            return _fail(f"four eyes: {exc.why}", code=3)
        except QuarantineNotFound:
            return _fail(f"no quarantined message with id {args.id}")
        except QuarantineClaimedError as exc:
            return _fail(f"message {args.id} is being released by {exc.claimed_by}; nothing done")
        except QuarantineStateError as exc:
            return _fail(f"message {args.id} is already {exc.status}; nothing done")


def _four_eyes_guard(review: Review, settings: Settings) -> Any:
    """The admin UI's rule: a ``four_eyes`` message goes as sent only through requests."""
    from relay.review.desk import RequestDesk

    rules = {rule.name: rule for rule in settings.policy.rules}
    return RequestDesk(review=review, rules=rules, log=_QuietLog()).guard_as_is


def _runner(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        settings = load_or_report(args.config)
        if settings is None:
            return 2
        try:
            return asyncio.run(_run(command, args, settings))
        except StoreError as exc:
            return _fail(f"quarantine store: {exc}")

    return run


def _age(text: str) -> float:
    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``quarantine list|show|release|delete|purge``."""
    q = subparsers.add_parser("quarantine", help="review held messages", parents=[common])
    sub = q.add_subparsers(dest="quarantine_command", metavar="SUBCOMMAND", required=True)
    listing = sub.add_parser("list", help="list messages, newest first", parents=[common])
    listing.add_argument("--status", choices=(*STATUSES, "all"), default="held")
    listing.add_argument("--rule", help="only messages held by this rule")
    listing.add_argument(
        "--sender",
        help="sender contains this or matches *@example.org; a full address matches exactly",
    )
    listing.add_argument("--subject", help="subject contains this")
    listing.add_argument("--rcpt-domain", dest="rcpt_domain", help="a recipient at this domain")
    listing.add_argument("--since", metavar="WHEN", help="received since: 7d, 2026-11-01, ...")
    listing.add_argument("--until", metavar="WHEN", help="received until (a date: that whole day)")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_runner(_list))
    show = sub.add_parser("show", help="show one message (audited)", parents=[common])
    show.add_argument("id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_runner(_show))
    release = sub.add_parser("release", help="deliver held messages", parents=[common])
    release.add_argument("id", nargs="?", help="the message (or use the filters below)")
    release.add_argument(
        "--hidden", action="store_true", help="hide the external recipients (rewrite)"
    )
    add_filter_args(release)
    release.set_defaults(func=_runner(_release))
    delete = sub.add_parser("delete", help="delete held messages", parents=[common])
    delete.add_argument("id", nargs="?", help="the message (or use the filters below)")
    add_filter_args(delete)
    delete.set_defaults(func=_runner(_delete))
    purge = sub.add_parser("purge", help="remove old messages of any status", parents=[common])
    purge.add_argument(
        "--older-than", required=True, type=_age, metavar="AGE", help="e.g. 30d, 12h, 90m"
    )
    purge.set_defaults(func=_runner(_purge))
