"""``ccguard requests list|approve|deny``: release requests (sender self-service) from a shell.

The same rules as the admin UI and API: the requester may never approve, a
``four_eyes`` rule needs two different reviewers, every step is audited with
the actor ``cli:<unix user>`` and the sender of a sender-made request is
mailed the decision.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from relay.actions.release import QuarantineReleaser
from relay.admin.api import iso_time
from relay.admin.releasing import ReleaseDeferred
from relay.admin.review import Review
from relay.cli.config import load_or_report
from relay.cli.quarantine import _actor, _QuietLog
from relay.errors import (
    CCGuardError,
    FourEyesError,
    QuarantineStateError,
    RequestNotFound,
    RequestStateError,
    StoreError,
    UpstreamError,
)
from relay.inspect.domains import DomainMatcher
from relay.quarantine import open_store
from relay.quarantine.requests import REQUEST_STATUSES, ReleaseRequest
from relay.review.desk import RequestDesk
from relay.settings import Settings
from relay.upstream import UpstreamClient

__all__ = ["register"]

Command = Callable[[RequestDesk, argparse.Namespace], Awaitable[int]]


def _fail(message: str, code: int = 1) -> int:
    print(f"ccguard requests: {message}", file=sys.stderr)
    return code


def _line(r: ReleaseRequest) -> str:
    approvals = ",".join(r.approvers) or "-"
    return (
        f"{r.id}  {r.status:<8} {iso_time(r.created_at)}  message {r.message_id}  "
        f"by {r.requester}  approvals {len(r.approvals)}/{r.approvals_needed} ({approvals})  "
        f"{r.justification!r}"
    )


async def _list(desk: RequestDesk, args: argparse.Namespace) -> int:
    status = None if args.status == "all" else args.status
    items = await desk.store.list_requests(status=status, limit=args.limit)
    if args.json:
        from relay.admin.requests_web import request_json

        print(json.dumps([request_json(r) for r in items], indent=2))
        return 0
    for item in items:
        print(_line(item))
    return 0


async def _approve(desk: RequestDesk, args: argparse.Namespace) -> int:
    request, report = await desk.approve(args.id, _actor(), args.comment)
    if report is None:
        have = f"{len(request.approvals)}/{request.approvals_needed}"
        print(f"approval recorded for {args.id} ({have}): another reviewer must approve too")
    else:
        print(f"approved {args.id}: message {request.message_id} delivered as sent")
    return 0


async def _deny(desk: RequestDesk, args: argparse.Namespace) -> int:
    await desk.deny(args.id, _actor(), args.comment)
    print(f"denied {args.id}; the sender is told")
    return 0


async def _run(command: Command, args: argparse.Namespace, settings: Settings) -> int:
    async with AsyncExitStack() as stack:
        store = open_store(settings.quarantine)
        await store.open()
        stack.push_async_callback(store.close)
        client = UpstreamClient(
            settings.upstream, local_hostname=settings.upstream.helo_name or settings.smtp.hostname
        )
        stack.push_async_callback(client.close)
        releaser = QuarantineReleaser(client, DomainMatcher(settings.organisation.internal_domains))
        review = Review(store, releaser, _QuietLog(), claim_lease=settings.quarantine.claim_lease)
        mails: list[Awaitable[Any]] = []

        def send(rcpt: str, data: bytes) -> None:
            mails.append(client.deliver("", [rcpt], data))

        desk = RequestDesk(
            review=review, rules={r.name: r for r in settings.policy.rules}, log=_QuietLog(),
            send_mail=send, from_address=settings.notifications.from_address,
            hostname=settings.smtp.hostname,
        )  # fmt: skip
        review.as_is_guard = desk.guard_as_is
        try:
            return await command(desk, args)
        except FourEyesError as exc:
            return _fail(f"four eyes: {exc.why}", code=3)
        except (RequestNotFound, RequestStateError, QuarantineStateError) as exc:
            return _fail(str(exc))
        except (UpstreamError, ReleaseDeferred) as exc:
            return _fail(f"approved, but not delivered ({exc}); release it again later")
        finally:
            for outcome in await asyncio.gather(*mails, return_exceptions=True):
                if isinstance(outcome, CCGuardError):
                    print(f"ccguard requests: decision mail not sent: {outcome}", file=sys.stderr)


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


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``requests list|approve|deny``."""
    r = subparsers.add_parser("requests", help="release requests (four eyes)", parents=[common])
    sub = r.add_subparsers(dest="requests_command", metavar="SUBCOMMAND", required=True)
    listing = sub.add_parser("list", help="requests, newest first", parents=[common])
    listing.add_argument("--status", choices=(*REQUEST_STATUSES, "all"), default="pending")
    listing.add_argument("--limit", type=int, default=100)
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=_runner(_list))
    for name, func, what in (("approve", _approve, "approve"), ("deny", _deny, "deny")):
        cmd = sub.add_parser(name, help=f"{what} a pending request", parents=[common])
        cmd.add_argument("id")
        cmd.add_argument("--comment", default="", help="shown to the sender and in the audit")
        cmd.set_defaults(func=_runner(func))
