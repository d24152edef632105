"""The overview's figures from plain rows: outcomes, protected addresses, days, decisions."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from relay.admin.figures import Period, compute_figures, outcome_of
from relay.admin.report_render import duration
from relay.quarantine.stats import PeriodRow

NOV = Period(date(2026, 11, 1), date(2026, 11, 3))


def _t(day: int, hour: int = 12) -> float:
    return datetime(2026, 11, day, hour, tzinfo=UTC).timestamp()


def row(n: int, received: float, status: str = "held", **kw: object) -> PeriodRow:
    fields: dict[str, object] = {
        "id": f"m{n}", "received_at": received, "status": status, "sender": "a@example.org",
        "rule": "bulk", "action": "quarantine", "visible_external": 10, "external_domains": 2,
        "visible_total": 12, "released_at": None, "released_by": None, "release_mode": None,
        "deleted_at": None, "deleted_by": None,
    }  # fmt: skip
    fields.update(kw)
    return PeriodRow(**fields)  # type: ignore[arg-type]


def test_outcomes() -> None:
    assert outcome_of(row(1, _t(1))) == "held"
    assert outcome_of(row(1, _t(1), "deleted")) == "deleted"
    assert outcome_of(row(1, _t(1), "released", release_mode="as-is")) == "released_as_is"
    assert outcome_of(row(1, _t(1), "released", release_mode="rewrite")) == "released_hidden"


def test_protected_counts_everything_but_released_as_sent() -> None:
    rows = [
        row(1, _t(1), visible_external=5),
        row(2, _t(1), "deleted", visible_external=7, deleted_at=_t(1, 13), deleted_by="bob"),
        row(3, _t(2), "released", release_mode="rewrite", visible_external=11,
            released_at=_t(2, 14), released_by="alice"),
        row(4, _t(2), "released", release_mode="as-is", visible_external=100,
            released_at=_t(3), released_by="alice"),
    ]  # fmt: skip
    f = compute_figures(rows, NOV)
    assert (f.caught, f.protected_messages, f.protected_external) == (4, 3, 23)
    assert [e.id for e in f.largest] == ["m3", "m2", "m1"]  # as-sent m4 prevented nothing
    assert [d.total for d in f.per_day] == [2, 2, 0]
    assert f.per_day[0].counts == {
        "deleted": 1, "released_hidden": 0, "held": 1, "released_as_is": 0
    }  # fmt: skip
    assert f.decisions.count == 3
    assert f.decisions.median_seconds == 7200  # 1 h, 2 h, 24 h
    assert f.decisions.by_kind["deleted"].median_seconds == 3600
    assert [(r.name, r.messages) for r in f.decisions.by_reviewer] == [("alice", 2), ("bob", 1)]


def test_a_decision_in_the_period_about_an_older_message_counts_as_a_decision_only() -> None:
    old = row(1, _t(1) - 5 * 86400, "deleted", deleted_at=_t(1), deleted_by="bob")
    f = compute_figures([old], NOV)
    assert f.caught == 0 and f.protected_external == 0
    assert f.decisions.count == 1 and f.decisions.median_seconds == pytest.approx(5 * 86400)


def test_last_day_is_included_and_the_next_is_not() -> None:
    rows = [row(1, NOV.end - 1), row(2, NOV.end)]
    assert compute_figures(rows, NOV).caught == 1


def test_reviewer_and_sender_mapping() -> None:
    rows = [row(1, _t(1), "deleted", deleted_at=_t(1, 13), deleted_by="x@example.org")]
    f = compute_figures(rows, NOV, reviewer=lambda n: "hashed", sender=lambda s: s.upper())
    assert f.decisions.by_reviewer[0].name == "hashed"
    assert [(s.name, s.messages, s.external) for s in f.senders] == [
        ("A@" + "example.org".upper(), 1, 10)
    ]


def test_period_must_not_end_before_it_starts() -> None:
    with pytest.raises(ValueError):
        Period(date(2026, 11, 2), date(2026, 11, 1))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (42, "42 s"), (600, "10 min"), (95, "1 min 35 s"), (7300, "2 h 1 min"),
     (3 * 86400 + 7200, "3 d 2 h")],
)  # fmt: skip
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text
