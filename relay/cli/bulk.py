"""``ccguard quarantine release --hidden --rule R --older-than 1h`` and ``delete`` with
filters: decide every held message a filter matches, one by one (claimed and
audited each), and say what happened to each.

Without a message id, at least one filter is required, so that a typo never
releases or deletes the whole quarantine.  Bulk release is with recipients
hidden only: releasing as sent shows every address, one message at a time.
"""

from __future__ import annotations

import argparse
import json
import time

from relay.admin.bulk import BULK_DELETE, MAX_BULK, matching_ids, run_bulk, summarise
from relay.admin.filters import exact_sender, parse_age
from relay.admin.review import Review
from relay.quarantine.search import MessageQuery

__all__ = ["FILTER_FLAGS", "add_filter_args", "has_filter", "run_bulk_command"]

FILTER_FLAGS = ("rule", "sender", "subject", "rcpt_domain", "older_than")


def _age(text: str) -> float:
    try:
        return parse_age(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_filter_args(parser: argparse.ArgumentParser) -> None:
    """The filters that pick messages when no id is given, and ``--json``."""
    group = parser.add_argument_group("instead of an id: every held message matching")
    group.add_argument("--rule", help="held by this rule")
    group.add_argument("--sender", help="sender contains this, or matches *@example.org")
    group.add_argument("--subject", help="subject contains this")
    group.add_argument("--rcpt-domain", dest="rcpt_domain", help="a recipient at this domain")
    group.add_argument(
        "--older-than", dest="older_than", type=_age, metavar="AGE", help="e.g. 1h, 2d"
    )
    parser.add_argument("--json", action="store_true", help="print the outcomes as JSON")


def has_filter(args: argparse.Namespace) -> bool:
    """True when some filter flag was given a value (a blank one filters nothing)."""
    values = (getattr(args, name, None) for name in FILTER_FLAGS)
    return any(v is not None and (not isinstance(v, str) or v.strip()) for v in values)


def _query(args: argparse.Namespace) -> MessageQuery:
    older = args.older_than
    return exact_sender(MessageQuery(
        rule=args.rule, sender=args.sender, subject=args.subject, rcpt_domain=args.rcpt_domain,
        until=None if older is None else time.time() - older,
    ))  # fmt: skip


async def run_bulk_command(
    review: Review, args: argparse.Namespace, action: str, actor: str
) -> int:
    """Decide every held message matching the flags; 0 if all went well, 1 otherwise."""
    ids = await matching_ids(review, _query(args), MAX_BULK)
    outcomes = await run_bulk(review, ids, action, actor) if ids else []
    if args.json:
        rows = [{"id": o.id, "result": o.result, "ok": o.ok, "message": o.text} for o in outcomes]
        print(json.dumps({"messages": len(rows), "counts": summarise(outcomes), "results": rows}))
    else:
        for o in outcomes:
            print(f"{o.id}  {o.result:<15} {o.text}")
        done = "deleted" if action == BULK_DELETE else "released with recipients hidden"
        ok = sum(1 for o in outcomes if o.ok)
        print(f"{ok} of {len(outcomes)} matching held message(s) {done}")
        if len(ids) == MAX_BULK:
            print(f"(at most {MAX_BULK} at a time: run it again for the rest)")
    return 0 if all(o.ok for o in outcomes) else 1
