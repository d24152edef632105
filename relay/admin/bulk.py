"""Deciding many held messages at once: release with recipients hidden, or delete.

Each message goes through :class:`~relay.admin.review.Review` on its own,
exactly as if a reviewer had clicked it: it is claimed, delivered (or wiped)
and audited by itself, so one failure (the upstream down, another reviewer
first) never stops or undoes the others.  What happened to each comes back
as one :class:`BulkOutcome`; one more audit entry (action ``bulk``) sums the run up.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from relay.admin.releasing import ReleaseDeferred
from relay.admin.review import MODE_HIDDEN, Review
from relay.errors import (
    CalendarAttendeesVisible,
    QuarantineClaimedError,
    QuarantineNotFound,
    QuarantineStateError,
    StoreError,
    UpstreamError,
)
from relay.observability.metrics import Metrics
from relay.quarantine.search import MessageQuery
from relay.quarantine.store import HELD

__all__ = [
    "BULK_ACTIONS",
    "BULK_DELETE",
    "BULK_RELEASE_HIDDEN",
    "MAX_BULK",
    "BulkOutcome",
    "count_outcomes",
    "matching_ids",
    "run_bulk",
    "summarise",
]

BULK_RELEASE_HIDDEN = "release-hidden"
BULK_DELETE = "delete"
BULK_ACTIONS: tuple[str, ...] = (BULK_RELEASE_HIDDEN, BULK_DELETE)
#: Most messages one bulk request decides (a filter matching more decides the newest).
MAX_BULK = 500
#: Messages delivered at the same time (each its own upstream transaction).
CONCURRENCY = 4
OK_RESULTS = frozenset({"released", "deleted"})


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """What happened to one message: ``result`` is a fixed word, ``text`` says it in full."""

    id: str
    result: str
    text: str

    @property
    def ok(self) -> bool:
        return self.result in OK_RESULTS


async def matching_ids(review: Review, query: MessageQuery, cap: int = MAX_BULK) -> list[str]:
    """Ids of the HELD messages matching ``query`` (its status ignored), newest first,
    at most ``cap``."""
    page = await review.store.search(dataclasses.replace(query, status=HELD), limit=cap)
    return [item.id for item in page.items]


async def _one(review: Review, message_id: str, action: str, actor: str) -> BulkOutcome:
    try:
        if action == BULK_DELETE:
            await review.delete(message_id, actor)
            return BulkOutcome(message_id, "deleted", "deleted")
        report = await review.release(message_id, MODE_HIDDEN, actor)
        text = "delivered with the external recipients hidden"
        if report.refused:
            text += "; " + report.refused_text()
        return BulkOutcome(message_id, "released", text)
    except QuarantineNotFound:
        return BulkOutcome(message_id, "not_found", "no such message (purged?)")
    except QuarantineClaimedError as exc:
        return BulkOutcome(message_id, "conflict", f"being released by {exc.claimed_by}")
    except QuarantineStateError as exc:
        return BulkOutcome(message_id, "conflict", f"already {exc.status}")
    except ReleaseDeferred as exc:
        return BulkOutcome(message_id, "deferred", exc.report.still_held_text())
    except CalendarAttendeesVisible:
        text = "calendar invitation: hiding recipients cannot hide its attendees; still held"
        return BulkOutcome(message_id, "refused", text)
    except UpstreamError as exc:
        reply = f"{exc.kind}, {exc.reply.code} {exc.reply.status}"
        text = f"the upstream did not accept it ({reply}); still held"
        return BulkOutcome(message_id, "upstream_failed", text)
    except StoreError:
        return BulkOutcome(message_id, "store_failed", "the quarantine store failed; try again")


async def run_bulk(
    review: Review, ids: Sequence[str], action: str, actor: str
) -> list[BulkOutcome]:
    """Apply ``action`` (one of BULK_ACTIONS) to each id (duplicates once), a few at a
    time; one outcome per id, in the order given.  Audits a ``bulk`` summary entry."""
    if action not in BULK_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(BULK_ACTIONS)}")
    unique = list(dict.fromkeys(ids))[:MAX_BULK]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def guarded(message_id: str) -> BulkOutcome:
        async with gate:
            return await _one(review, message_id, action, actor)

    outcomes = list(await asyncio.gather(*(guarded(i) for i in unique)))
    counts = summarise(outcomes)
    detail = f"action={action} messages={len(outcomes)} " + " ".join(
        f"{result}={n}" for result, n in sorted(counts.items())
    )
    failed = any(not o.ok for o in outcomes)
    await review.audit(actor, "bulk", "*", "partial" if failed else "ok", detail.strip())
    return outcomes


def count_outcomes(metrics: Metrics | None, action: str, outcomes: Iterable[BulkOutcome]) -> None:
    """Count each outcome in ``ccguard_admin_bulk_messages_total`` (no-op without metrics)."""
    if metrics is not None:
        for outcome in outcomes:
            metrics.bulk_message(action, outcome.result)


def summarise(outcomes: Iterable[BulkOutcome]) -> Mapping[str, int]:
    """How many outcomes had each result."""
    return dict(Counter(o.result for o in outcomes))
