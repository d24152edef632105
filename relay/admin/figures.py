"""The overview's and the evidence report's figures, computed from store rows (pure).

No I/O and no clock: the caller passes the rows (:meth:`QuarantineStore.period_rows`),
the period, "now" and the current held count.  Days are UTC calendar days.

Outcomes: a message caught in the period is counted under what became of it
by the time the figures are made: still ``held``, ``released_as_is`` (it went
out as written), ``released_hidden`` (it went out with the external
recipients hidden) or ``deleted``.  Every outcome but ``released_as_is`` is a
message that did not go out as written: its visible external addresses count
as *protected*.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from relay.quarantine.stats import PeriodRow
from relay.quarantine.store import DELETED, HELD, RELEASE_AS_IS, RELEASED

__all__ = [
    "OUTCOMES",
    "OUTCOME_LABELS",
    "DayCount",
    "DecisionFigures",
    "Exposure",
    "Figures",
    "Period",
    "RankedCount",
    "compute_figures",
    "outcome_of",
]

HELD_NOW = HELD
RELEASED_AS_IS = "released_as_is"
RELEASED_HIDDEN = "released_hidden"
OUTCOMES: tuple[str, ...] = (DELETED, RELEASED_HIDDEN, HELD_NOW, RELEASED_AS_IS)
OUTCOME_LABELS = {
    DELETED: "deleted",
    RELEASED_HIDDEN: "released, recipients hidden",
    HELD_NOW: "still held",
    RELEASED_AS_IS: "released as sent",
}
PROTECTED_OUTCOMES = frozenset({DELETED, RELEASED_HIDDEN, HELD_NOW})
TOP = 10
_DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Period:
    """UTC days ``first`` .. ``last`` inclusive."""

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError("the period ends before it starts")

    @property
    def start(self) -> float:
        """Epoch seconds of ``first`` 00:00 UTC."""
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=UTC).timestamp()

    @property
    def end(self) -> float:
        """Epoch seconds of the day after ``last``, 00:00 UTC (exclusive)."""
        return self.start + self.days * _DAY

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def dates(self) -> list[date]:
        """Every day of the period, in order."""
        return [self.first + timedelta(days=n) for n in range(self.days)]

    def contains(self, epoch: float | None) -> bool:
        return epoch is not None and self.start <= epoch < self.end


@dataclass(frozen=True, slots=True)
class DayCount:
    """Messages caught on one day, per outcome."""

    day: date
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class RankedCount:
    """A name (rule, reviewer, sender) with its message count and external addresses."""

    name: str
    messages: int
    external: int = 0
    median_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Exposure:
    """One message that did not go out as written: how many addresses it would have shown."""

    id: str
    received_at: float
    rule: str | None
    visible_external: int
    external_domains: int
    outcome: str


@dataclass(frozen=True, slots=True)
class DecisionFigures:
    """Reviewer decisions made in the period and how long after receipt."""

    count: int
    median_seconds: float | None
    by_kind: dict[str, RankedCount]
    by_reviewer: list[RankedCount]


@dataclass(frozen=True, slots=True)
class Figures:
    """Everything the overview page and the report show."""

    period: Period
    caught: int
    by_outcome: dict[str, int]
    per_day: list[DayCount]
    top_rules: list[RankedCount]
    largest: list[Exposure]
    protected_messages: int
    protected_external: int
    decisions: DecisionFigures
    senders: list[RankedCount] = field(default_factory=list)


def outcome_of(row: PeriodRow) -> str:
    """What became of the message (one of :data:`OUTCOMES`)."""
    if row.status == RELEASED:
        return RELEASED_AS_IS if row.release_mode == RELEASE_AS_IS else RELEASED_HIDDEN
    return DELETED if row.status == DELETED else HELD_NOW


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _per_day(period: Period, caught: Sequence[PeriodRow]) -> list[DayCount]:
    days = {d: dict.fromkeys(OUTCOMES, 0) for d in period.dates()}
    for row in caught:
        day = datetime.fromtimestamp(row.received_at, UTC).date()
        days[day][outcome_of(row)] += 1
    return [DayCount(d, counts) for d, counts in days.items()]


def _ranked(
    rows: Iterable[PeriodRow], key: Callable[[PeriodRow], str], limit: int = TOP
) -> list[RankedCount]:
    messages: Counter[str] = Counter()
    external: Counter[str] = Counter()
    for row in rows:
        messages[key(row)] += 1
        external[key(row)] += row.visible_external
    ordered = sorted(messages, key=lambda name: (-messages[name], -external[name], name))
    return [RankedCount(name, messages[name], external[name]) for name in ordered[:limit]]


def _decisions(
    period: Period, rows: Sequence[PeriodRow], reviewer: Callable[[str], str]
) -> DecisionFigures:
    decided = [r for r in rows if period.contains(r.decided_at)]
    waits: dict[str, list[float]] = defaultdict(list)
    by_reviewer: dict[str, list[float]] = defaultdict(list)
    for row in decided:
        assert row.decided_at is not None
        wait = max(0.0, row.decided_at - row.received_at)
        waits[outcome_of(row)].append(wait)
        by_reviewer[reviewer(row.decided_by or "?")].append(wait)
    kinds = {
        kind: RankedCount(kind, len(waits[kind]), median_seconds=_median(waits[kind]))
        for kind in (DELETED, RELEASED_HIDDEN, RELEASED_AS_IS)
    }
    people = sorted(by_reviewer.items(), key=lambda item: (-len(item[1]), item[0]))
    return DecisionFigures(
        count=len(decided),
        median_seconds=_median([w for ws in waits.values() for w in ws]),
        by_kind=kinds,
        by_reviewer=[RankedCount(n, len(ws), median_seconds=_median(ws)) for n, ws in people],
    )


def compute_figures(
    rows: Sequence[PeriodRow],
    period: Period,
    *,
    reviewer: Callable[[str], str] = str,
    sender: Callable[[str], str] | None = None,
) -> Figures:
    """The period's figures from ``rows`` (messages received or decided in it).

    ``reviewer`` maps a reviewer's login to what is shown (the report hashes
    any that looks like an address); ``sender``, when given, maps the envelope
    sender to what is shown and adds the top senders.
    """
    caught = [r for r in rows if period.contains(r.received_at)]
    by_outcome = Counter(outcome_of(r) for r in caught)
    protected = [r for r in caught if outcome_of(r) in PROTECTED_OUTCOMES]
    largest = sorted(protected, key=lambda r: (-r.visible_external, -r.external_domains, r.id))
    return Figures(
        period=period,
        caught=len(caught),
        by_outcome={o: by_outcome.get(o, 0) for o in OUTCOMES},
        per_day=_per_day(period, caught),
        top_rules=_ranked(caught, lambda r: r.rule or "(no rule)"),
        largest=[
            Exposure(
                r.id, r.received_at, r.rule, r.visible_external, r.external_domains, outcome_of(r)
            )
            for r in largest[:TOP]
        ],
        protected_messages=len(protected),
        protected_external=sum(r.visible_external for r in protected),
        decisions=_decisions(period, rows, reviewer),
        senders=[] if sender is None else _ranked(caught, lambda r: sender(r.sender or "<>")),
    )
