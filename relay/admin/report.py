"""The evidence report: the period's figures, the policy in force and the reviewers'
decisions, as JSON, HTML or PDF; shared by ``ccguard report`` and the overview's
download button.

No address of anyone goes in: senders and any reviewer login that looks like an
address are keyed hashes (``[logging] hash_key``, as in the logs), the policy is
shown by thresholds and by how many sender / recipient exemptions a rule has,
never by the exempted addresses.  ``with_senders`` (the CLI's ``--with-senders``,
for internal use) puts the senders in clear.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from relay.admin.figures import OUTCOME_LABELS, Figures, Period, RankedCount, compute_figures
from relay.observability.redact import Redactor
from relay.quarantine.store import QuarantineStats, QuarantineStore
from relay.settings import PolicySettings, RuleSettings

__all__ = ["Report", "ReportSource", "gather", "parse_day", "policy_summary", "report_json"]

_THRESHOLDS = (
    "min_visible_external", "min_external_domains", "min_visible_total", "min_unparseable",
    "header_too_large", "calendar", "calendar_truncated",
)  # fmt: skip
_LISTS = ("senders", "exempt_senders", "exempt_recipients", "auth_users")


@dataclass(frozen=True, slots=True)
class ReportSource:
    """What the report needs besides the store: the policy in force and the hash key."""

    policy: PolicySettings
    internal_domains: tuple[str, ...]
    redactor: Redactor


@dataclass(frozen=True, slots=True)
class Report:
    """One period's report, ready to render."""

    figures: Figures
    stats: QuarantineStats
    policy: dict[str, Any]
    generated_at: float
    with_senders: bool
    hashes_reproducible: bool


def parse_day(text: str) -> date:
    """``2026-11-01`` → a date; raises ValueError with a readable message."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date like 2026-11-01") from None


def _rule(rule: RuleSettings) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": rule.name, "action": str(rule.action)}
    entry.update({k: getattr(rule, k) for k in _THRESHOLDS if getattr(rule, k) is not None})
    entry.update({f"{k}_count": len(getattr(rule, k)) for k in _LISTS if getattr(rule, k)})
    return entry


def policy_summary(source: ReportSource) -> dict[str, Any]:
    """Mode, calendar fallback, internal domains and every rule's thresholds (no addresses)."""
    return {
        "mode": source.policy.mode,
        "calendar_fallback": source.policy.calendar_fallback,
        "internal_domains": list(source.internal_domains),
        "rules": [_rule(r) for r in source.policy.rules],
    }


def _reviewer(redactor: Redactor) -> Callable[[str], str]:
    return lambda name: redactor.address(name) if "@" in name else name


async def gather(
    store: QuarantineStore,
    period: Period,
    source: ReportSource,
    *,
    with_senders: bool = False,
    now: float | None = None,
) -> Report:
    """Read the period from the store and compute the report's figures."""
    rows = await store.period_rows(period.start, period.end)
    # Each sender hashed once, not once per message (a period holds up to 500,000).
    sender: Callable[[str], str] = (
        (lambda s: s) if with_senders else functools.cache(source.redactor.address)
    )
    # In a worker thread: the event loop also serves SMTP (seconds for a big period).
    figures = await asyncio.to_thread(
        compute_figures, rows, period, reviewer=_reviewer(source.redactor), sender=sender
    )
    return Report(
        figures=figures,
        stats=await store.stats(),
        policy=policy_summary(source),
        generated_at=time.time() if now is None else now,
        with_senders=with_senders,
        hashes_reproducible=not source.redactor.ephemeral,
    )


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _ranked(items: list[RankedCount], key: str) -> list[dict[str, Any]]:
    return [{key: r.name, "messages": r.messages, "external_addresses": r.external} for r in items]


def _decisions_json(figures: Figures) -> dict[str, Any]:
    d = figures.decisions
    return {
        "count": d.count,
        "median_seconds": d.median_seconds,
        "by_kind": {
            k: {"count": v.messages, "median_seconds": v.median_seconds}
            for k, v in d.by_kind.items()
        },
        "by_reviewer": [
            {"reviewer": r.name, "count": r.messages, "median_seconds": r.median_seconds}
            for r in d.by_reviewer
        ],
    }


def report_json(report: Report) -> dict[str, Any]:
    """The report as a JSON-ready dict (what ``--format json`` prints)."""
    f = report.figures
    return {
        "report": "ccguard evidence report",
        "generated_at": _iso(report.generated_at),
        "period": {
            "from": f.period.first.isoformat(),
            "to": f.period.last.isoformat(),
            "timezone": "UTC",
        },
        "policy": report.policy,
        "figures": {
            "caught": f.caught,
            "by_outcome": f.by_outcome,
            "protected_messages": f.protected_messages,
            "external_addresses_protected": f.protected_external,
            "held_now": report.stats.held,
            "oldest_held_at": _iso(report.stats.oldest_held_at),
        },
        "outcome_labels": OUTCOME_LABELS,
        "per_day": [{"date": d.day.isoformat(), **d.counts} for d in f.per_day],
        "top_rules": _ranked(f.top_rules, "rule"),
        "largest_exposures": [
            {
                "id": e.id,
                "received_at": _iso(e.received_at),
                "rule": e.rule,
                "visible_external": e.visible_external,
                "external_domains": e.external_domains,
                "outcome": e.outcome,
            }
            for e in f.largest
        ],
        "decisions": _decisions_json(f),
        "senders": {
            "shown_as": "address" if report.with_senders else "keyed hash",
            "hashes_reproducible": report.hashes_reproducible,
            "top": _ranked(f.senders, "sender"),
        },
    }
