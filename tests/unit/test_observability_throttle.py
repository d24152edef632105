"""The log line throttle: a burst per key and interval, then one count per window
(a settable clock, no sleeps)."""

from __future__ import annotations

from typing import Any

from relay.observability.throttle import OVERFLOW_KEY, LineThrottle, Suppressed

REFUSED = ("client refused", "network", "")
EARLY = ("client refused", "early_talker", "")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def throttle(
    burst: int = 3, interval: float = 60.0, **kw: Any
) -> tuple[LineThrottle, list[Suppressed], Clock]:
    reports: list[Suppressed] = []
    clock = Clock()
    return LineThrottle(burst, interval, reports.append, clock=clock, **kw), reports, clock


def test_a_burst_is_written_then_lines_are_dropped_and_counted_once_the_interval_is_over() -> None:
    lines, reports, clock = throttle()
    assert [lines.allow(REFUSED) for _ in range(5)] == [True, True, True, False, False]
    clock.now += 59.9
    assert not lines.allow(REFUSED)
    assert lines.flush() == 1060.0  # the window with lines dropped ends then
    assert reports == []  # nothing is said while the window lasts
    clock.now = 1060.0
    assert lines.flush() is None
    assert reports == [Suppressed(REFUSED, 3, 60.0, 60.0)]
    assert lines.flush() is None and len(reports) == 1  # said once
    assert [lines.allow(REFUSED) for _ in range(4)] == [True, True, True, False]


def test_the_next_line_after_the_interval_reports_the_window_before_it_is_written() -> None:
    lines, reports, clock = throttle(burst=1, interval=10.0)
    assert lines.allow(REFUSED) and not lines.allow(REFUSED) and not lines.allow(REFUSED)
    clock.now += 10.0
    assert lines.allow(REFUSED)
    assert reports == [Suppressed(REFUSED, 2, 10.0, 10.0)]
    clock.now += 10.0
    lines.flush()
    assert len(reports) == 1  # the new window dropped nothing: nothing to say


def test_keys_have_windows_of_their_own() -> None:
    lines, reports, clock = throttle(burst=2)
    assert [lines.allow(REFUSED) for _ in range(4)] == [True, True, False, False]
    assert [lines.allow(EARLY) for _ in range(2)] == [True, True]  # a flood elsewhere costs nothing
    clock.now += 30
    assert [lines.allow(EARLY) for _ in range(2)] == [False, False]
    assert lines.ends_at(REFUSED) == 1060.0 and lines.ends_at(EARLY) == 1060.0
    clock.now += 30
    assert lines.flush() is None
    assert reports == [
        Suppressed(REFUSED, 2, 60.0, 60.0),
        Suppressed(EARLY, 2, 60.0, 60.0),
    ]


def test_a_window_that_starts_later_ends_later() -> None:
    lines, reports, clock = throttle(burst=1)
    lines.allow(REFUSED)
    clock.now += 20
    lines.allow(EARLY)
    lines.allow(EARLY)
    lines.allow(REFUSED)
    assert lines.flush() == 1060.0  # the earlier window first
    clock.now = 1060.0
    assert lines.flush() == 1080.0
    assert reports == [Suppressed(REFUSED, 1, 60.0, 60.0)]


def test_a_burst_or_an_interval_of_zero_writes_every_line() -> None:
    for burst, interval in ((0, 60.0), (100, 0.0)):
        lines, reports, clock = throttle(burst=burst, interval=interval)
        assert not lines.enabled
        assert all(lines.allow(REFUSED) for _ in range(1000))
        clock.now += 3600
        assert lines.flush() is None and reports == []


def test_shutdown_reports_windows_that_are_not_over_yet_with_how_long_they_lasted() -> None:
    lines, reports, clock = throttle(burst=1)
    lines.allow(REFUSED)
    lines.allow(REFUSED)
    lines.allow(EARLY)
    clock.now += 2.5
    assert lines.flush(everything=True) is None
    assert reports == [Suppressed(REFUSED, 1, 60.0, 2.5)]  # 2.5 s of a 60 s window
    assert lines.allow(REFUSED)  # everything was forgotten


def test_keys_are_bounded_the_rest_share_one_window() -> None:
    lines, reports, clock = throttle(burst=2, max_keys=2)
    lines.allow(REFUSED)
    lines.allow(EARLY)
    others = [("client refused", f"reason{i}", "") for i in range(5)]
    assert [lines.allow(key) for key in others] == [True, True, False, False, False]
    assert lines.ends_at(others[4]) == 1060.0
    clock.now += 60
    lines.flush()
    assert reports == [Suppressed(OVERFLOW_KEY, 3, 60.0, 60.0)]
    assert lines.allow(others[0])  # the windows that were over made room again


def test_the_overflow_window_is_the_one_the_caller_names() -> None:
    def per_event(key: tuple[str, ...]) -> tuple[str, ...]:
        return (key[0], "other", "")

    lines, reports, clock = throttle(burst=1, max_keys=2, overflow=per_event)
    lines.allow(REFUSED)
    lines.allow(EARLY)
    late = [("client refused", "reason1", ""), ("tls handshake failed", "reason2", "")]
    assert [lines.allow(key) for key in late * 2] == [True, True, False, False]
    assert lines.ends_at(late[1]) == 1060.0
    clock.now += 60
    lines.flush()
    assert reports == [
        Suppressed(("client refused", "other", ""), 1, 60.0, 60.0),
        Suppressed(("tls handshake failed", "other", ""), 1, 60.0, 60.0),
    ]
