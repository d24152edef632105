"""The overview's four charts, built from :class:`~relay.admin.figures.Figures` (shared by
the overview page and the evidence report, so both show the same pictures)."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup

from relay.admin.figures import OUTCOME_LABELS, OUTCOMES, Figures
from relay.admin.svgchart import Series, horizontal_bars, stacked_bars

__all__ = ["OUTCOME_COLORS", "Charts", "build_charts", "minutes"]

# Colour-blind-safe (Okabe-Ito), in stacking order: bottom = deleted.
OUTCOME_COLORS = {
    "deleted": "#d55e00",
    "released_hidden": "#0072b2",
    "held": "#e69f00",
    "released_as_is": "#999999",
}


@dataclass(frozen=True, slots=True)
class Charts:
    """Inline SVG of each chart."""

    per_day: Markup
    largest: Markup
    rules: Markup
    decision_time: Markup


def minutes(seconds: float | None) -> float:
    """Seconds as minutes with one decimal (0 for None)."""
    return round(seconds / 60, 1) if seconds is not None else 0.0


def build_charts(figures: Figures) -> Charts:
    """Caught per day by outcome, largest exposures, top rules, median minutes to decide."""
    labels = [d.day.isoformat() for d in figures.per_day]
    series = [
        Series(OUTCOME_LABELS[o], OUTCOME_COLORS[o], [d.counts[o] for d in figures.per_day])
        for o in OUTCOMES
    ]
    first, last = figures.period.first, figures.period.last
    kinds = figures.decisions.by_kind
    return Charts(
        per_day=stacked_bars(
            "Messages caught per day, by what became of them",
            labels,
            series,
            desc=f"{figures.caught} messages held from {first} to {last} (UTC days).",
        ),
        largest=horizontal_bars(
            "Largest exposures prevented (visible external addresses)",
            [(e.id, e.visible_external) for e in figures.largest],
            color=OUTCOME_COLORS["deleted"],
            desc="Messages that did not go out as written, by how many external "
            "addresses every recipient would have seen.",
        ),
        rules=horizontal_bars(
            "Top rules (messages caught)",
            [(r.name, r.messages) for r in figures.top_rules],
            color="#009e73",
            desc="Which policy rules held the messages of the period.",
        ),
        decision_time=horizontal_bars(
            "Median time to decision (minutes)",
            [
                (OUTCOME_LABELS[k], minutes(v.median_seconds))
                for k, v in kinds.items()
                if v.messages
            ],
            color=OUTCOME_COLORS["released_hidden"],
            unit=" min",
            desc="From the moment a message was held to the reviewer's decision, "
            "for decisions made in the period.",
        ),
    )
