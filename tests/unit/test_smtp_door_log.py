"""The door's log lines on the event loop: the summary timer of windows that end at
different times, the metric, and shutdown (a settable clock, the real loop and metrics)."""

from __future__ import annotations

from typing import Any

from relay.observability.metrics import Metrics
from relay.settings import LoggingSettings
from relay.smtp.door_log import DoorLog
from tests.helpers.relay import LogCapture
from tests.helpers.waiting import wait_until

SUPPRESSED = "door log lines suppressed"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def door(burst: int, interval: float) -> tuple[DoorLog, LogCapture, Metrics, Clock]:
    log, metrics, clock = LogCapture(), Metrics(version="1", mode="enforce"), Clock()
    settings = LoggingSettings(door_log_burst=burst, door_log_interval=interval)
    return DoorLog(log.logger, settings, metrics, clock=clock), log, metrics, clock


def summaries(log: LogCapture) -> list[tuple[Any, ...]]:
    return [
        (e["line"], e["reason"], e.get("kind"), e["suppressed"])
        for e in log.events()
        if e["event"] == SUPPRESSED
    ]


def suppressed(metrics: Metrics, event: str) -> float:
    value = metrics.registry.get_sample_value(
        "ccguard_log_lines_suppressed_total", {"event": event}
    )
    return value or 0.0


async def test_each_window_is_summed_up_when_it_ends_even_one_that_started_first() -> None:
    lines, log, metrics, clock = door(burst=1, interval=1.0)
    lines.warning("client refused", "network", client_ip="192.0.2.1")  # window A: 0 .. 1
    clock.now = 0.5
    lines.info("tls handshake failed", "protocol", kind="implicit", client_ip="192.0.2.2")
    lines.info("tls handshake failed", "protocol", kind="implicit", client_ip="192.0.2.3")
    clock.now = 0.6  # window B (0.5 .. 1.5) dropped first; A drops now and ends sooner
    lines.warning("client refused", "network", client_ip="192.0.2.4")
    lines.warning("client refused", "network", client_ip="192.0.2.5")
    assert [e["event"] for e in log.events()] == ["client refused", "tls handshake failed"]
    assert suppressed(metrics, "client_refused") == 2
    assert suppressed(metrics, "tls_handshake_failed") == 1

    clock.now = 1.0
    await wait_until(lambda: summaries(log), "window A's summary")
    assert summaries(log) == [("client refused", "network", None, 2)]
    clock.now = 1.5
    await wait_until(lambda: len(summaries(log)) == 2, "window B's summary")
    assert summaries(log)[1] == ("tls handshake failed", "protocol", "implicit", 1)
    lines.close()
    assert len(summaries(log)) == 2


async def test_close_reports_what_is_pending_and_cancels_the_timer() -> None:
    lines, log, _, clock = door(burst=1, interval=0.05)
    lines.warning("proxy header refused", "invalid", peer_ip="192.0.2.1")
    lines.warning("proxy header refused", "invalid", peer_ip="192.0.2.1")
    lines.close()
    assert summaries(log) == [("proxy header refused", "invalid", None, 1)]
    clock.now = 10.0
    lines.warning("proxy header refused", "invalid", peer_ip="192.0.2.1")  # a new window
    assert [e["event"] for e in log.events()].count("proxy header refused") == 2


async def test_the_line_keeps_its_fields_a_queue_id_too() -> None:
    lines, log, _, _ = door(burst=100, interval=60.0)
    lines.warning(
        "tls handshake failed", "closed", kind="starttls", client_ip="192.0.2.1",
        queue_id="7KQ2XWZ9BCDF", detail="EOF",
    )  # fmt: skip
    [line] = log.events()
    assert line == {
        "event": "tls handshake failed", "level": "warning", "kind": "starttls",
        "reason": "closed", "client_ip": "192.0.2.1", "queue_id": "7KQ2XWZ9BCDF",
        "detail": "EOF",
    }  # fmt: skip
    lines.close()
