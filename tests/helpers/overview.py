"""A quarantine store with a known November 2026: messages held, released and deleted
on chosen days (through the real store API, with a test clock), and the figures the
overview and the report must show, computed independently from ``store.list``."""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from relay.quarantine.store import QuarantineStore
from tests.helpers.admin import new_message

__all__ = [
    "NOV_FIRST",
    "NOV_LAST",
    "SENDERS",
    "Clock",
    "SeedMessage",
    "expected_figures",
    "seed",
    "ts",
]

NOV_FIRST, NOV_LAST = "2026-11-01", "2026-11-30"
SENDERS = ("coordinator@example.org", "hr@example.org", "clinic@example.org")


def ts(day: str, hour: int = 9, minute: int = 0) -> float:
    """Epoch seconds of ``day`` (YYYY-MM-DD) at hour:minute UTC."""
    y, m, d = (int(p) for p in day.split("-"))
    return datetime(y, m, d, hour, minute, tzinfo=UTC).timestamp()


class Clock:
    """The store's clock: decisions are stamped with whatever time the test sets."""

    def __init__(self) -> None:
        self.now = ts("2026-12-01", 12)

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class SeedMessage:
    received: float
    external: int
    rule: str
    sender: str
    outcome: str  # held | deleted | as-is | rewrite
    decided_after: float = 0.0  # seconds after received
    reviewer: str = "alice"


PLAN = (
    SeedMessage(ts("2026-10-30", 15), 12, "bulk-external", SENDERS[0], "deleted", 3 * 86400),
    SeedMessage(ts("2026-11-02", 8), 40, "bulk-external", SENDERS[0], "rewrite", 600),
    SeedMessage(ts("2026-11-02", 9), 7, "many-domains", SENDERS[1], "as-is", 1200),
    SeedMessage(ts("2026-11-02", 10), 300, "bulk-external", SENDERS[2], "deleted", 300, "bob"),
    SeedMessage(ts("2026-11-05", 11), 25, "many-domains", SENDERS[0], "held"),
    SeedMessage(ts("2026-11-05", 12), 9, "bulk-external", SENDERS[1], "rewrite", 5400, "bob"),
    SeedMessage(ts("2026-11-11", 13), 150, "training", SENDERS[2], "deleted", 90),
    SeedMessage(ts("2026-11-11", 14), 6, "training", SENDERS[2], "held"),
    SeedMessage(ts("2026-11-20", 7), 18, "bulk-external", SENDERS[0], "as-is", 7200),
    SeedMessage(ts("2026-11-30", 23, 50), 60, "bulk-external", SENDERS[1], "rewrite", 1800),
    SeedMessage(ts("2026-12-01", 1), 80, "bulk-external", SENDERS[0], "deleted", 60),
)


def _message(plan: SeedMessage) -> Any:
    external = [f"person{n}@ext{n % 5}.example.com" for n in range(plan.external)]
    return new_message(
        f"Seeded {plan.rule}", external=external, rule=plan.rule, received_at=plan.received
    )


async def seed(store: QuarantineStore, clock: Clock) -> list[str]:
    """Hold every message of the plan and make its decision at its time; returns the ids."""
    ids = []
    for plan in PLAN:
        message_id = await store.put(dataclasses.replace(_message(plan), mail_from=plan.sender))
        ids.append(message_id)
        if plan.outcome == "held":
            continue
        clock.now = plan.received + plan.decided_after
        if plan.outcome == "deleted":
            await store.delete(message_id, plan.reviewer)
        else:
            await store.claim(message_id, plan.reviewer)
            await store.mark_released(message_id, plan.reviewer, plan.outcome)
    clock.now = ts("2026-12-01", 12)
    return ids


async def expected_figures(store: QuarantineStore, first: str, last: str) -> dict[str, Any]:
    """The report's headline figures, from ``store.list`` (not the overview's query)."""
    start, end = ts(first, 0), ts(last, 0) + 86400
    page = await store.list(limit=1000)
    caught = [m for m in page.items if start <= m.received_at < end]

    def outcome(m: Any) -> str:
        if m.status == "released":
            return "released_as_is" if m.release_mode == "as-is" else "released_hidden"
        return m.status

    protected = [m for m in caught if outcome(m) != "released_as_is"]
    decided = [
        m for m in page.items
        if (m.released_at or m.deleted_at) is not None
        and start <= (m.released_at or m.deleted_at) < end
    ]  # fmt: skip
    waits = [(m.released_at or m.deleted_at) - m.received_at for m in decided]
    return {
        "caught": len(caught),
        "by_outcome": {
            o: sum(1 for m in caught if outcome(m) == o)
            for o in ("deleted", "released_hidden", "held", "released_as_is")
        },
        "protected_messages": len(protected),
        "external_addresses_protected": sum(m.exposure["visible_external"] for m in protected),
        "decisions": len(decided),
        "median_seconds": statistics.median(waits) if waits else None,
        "largest": max(protected, key=lambda m: m.exposure["visible_external"]).id,
        "held_now": sum(1 for m in page.items if m.status == "held"),
    }
