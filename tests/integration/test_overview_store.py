"""The overview's read of the store, on SQLite and PostgreSQL alike: which messages a
period holds, and figures equal to what the store's own listing says."""

from __future__ import annotations

from datetime import date

from relay.admin.figures import Period, compute_figures
from relay.admin.report import ReportSource, gather, report_json
from relay.observability.redact import Redactor
from relay.settings import PolicySettings
from tests.helpers.overview import NOV_FIRST, NOV_LAST, PLAN, Clock, expected_figures, seed, ts
from tests.integration.conftest import StoreFactory

NOVEMBER = Period(date(2026, 11, 1), date(2026, 11, 30))


async def test_period_rows_hold_messages_received_or_decided_in_the_period(
    make_store: StoreFactory,
) -> None:
    clock = Clock()
    store = make_store(clock=clock)
    await store.open()
    ids = await seed(store, clock)
    rows = await store.period_rows(NOVEMBER.start, NOVEMBER.end)
    got = {r.id for r in rows}
    in_november = {
        i for i, p in zip(ids, PLAN, strict=True)
        if NOVEMBER.start <= p.received < NOVEMBER.end
        or (p.outcome != "held" and NOVEMBER.start <= p.received + p.decided_after < NOVEMBER.end)
    }  # fmt: skip
    assert got == in_november
    # Held 30 October, deleted 2 November: in the period for its decision only.
    assert ids[0] in got and ids[-1] not in got
    assert [r.received_at for r in rows] == sorted(r.received_at for r in rows)
    first = next(r for r in rows if r.id == ids[1])
    assert (first.status, first.release_mode, first.released_by) == ("released", "rewrite", "alice")
    assert (first.visible_external, first.rule) == (40, "bulk-external")
    assert first.decided_at == ts("2026-11-02", 8) + 600


async def test_figures_equal_what_the_store_lists(make_store: StoreFactory) -> None:
    clock = Clock()
    store = make_store(clock=clock)
    await store.open()
    await seed(store, clock)
    want = await expected_figures(store, NOV_FIRST, NOV_LAST)
    figures = compute_figures(await store.period_rows(NOVEMBER.start, NOVEMBER.end), NOVEMBER)
    assert figures.caught == want["caught"] == 9
    assert figures.by_outcome == want["by_outcome"]
    assert figures.protected_external == want["external_addresses_protected"] == 590
    assert figures.protected_messages == want["protected_messages"]
    assert figures.decisions.count == want["decisions"] == 7
    assert figures.decisions.median_seconds == want["median_seconds"]
    assert figures.largest[0].id == want["largest"]
    assert sum(d.total for d in figures.per_day) == figures.caught

    source = ReportSource(PolicySettings(), ("example.org",), Redactor("k"))
    data = report_json(await gather(store, NOVEMBER, source))
    assert data["figures"]["caught"] == want["caught"]
    assert data["figures"]["held_now"] == want["held_now"]
    assert data["figures"]["external_addresses_protected"] == 590
    assert "@" not in str(data)
