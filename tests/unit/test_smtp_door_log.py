"""The door's log lines on the event loop: the summary timer of windows that end at
different times, the metric, shutdown, the log level, the keys and the settings (a
settable clock, the real loop, metrics and settings loader)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relay.errors import ConfigError
from relay.observability.metrics import Metrics
from relay.settings import LoggingSettings, load_settings
from relay.smtp.door_log import DoorLog
from tests.helpers.relay import LogCapture
from tests.helpers.waiting import wait_until

SUPPRESSED = "door log lines suppressed"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def door(
    burst: int, interval: float, level: str = "info"
) -> tuple[DoorLog, LogCapture, Metrics, Clock]:
    """A door log, its lines filtered at ``level`` as ccguard's logger does."""
    log, metrics, clock = LogCapture(level), Metrics(version="1", mode="enforce"), Clock()
    settings = LoggingSettings(door_log_burst=burst, door_log_interval=interval, level=level)
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


async def test_close_reports_what_is_pending_with_how_long_it_lasted_and_cancels_the_timer() -> (
    None
):
    lines, log, _, clock = door(burst=1, interval=60.0)
    lines.warning("proxy header refused", "invalid", peer_ip="192.0.2.1")
    clock.now = 2.25
    lines.warning("proxy header refused", "invalid", peer_ip="192.0.2.1")
    lines.close()
    assert summaries(log) == [("proxy header refused", "invalid", None, 1)]
    [summary] = [e for e in log.events() if e["event"] == SUPPRESSED]
    assert (summary["interval_seconds"], summary["window_seconds"]) == (60.0, 2.25)
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


async def test_lines_below_the_log_level_are_neither_left_out_nor_counted() -> None:
    lines, log, metrics, _ = door(burst=1, interval=60.0, level="warning")
    for _ in range(5):  # info: a scanner on port 465, not shown at level "warning"
        lines.info("tls handshake failed", "protocol", kind="implicit", client_ip="192.0.2.1")
    for _ in range(3):
        lines.warning("client refused", "network", client_ip="192.0.2.2")
    lines.close()
    assert [e["event"] for e in log.events()] == ["client refused", SUPPRESSED]
    assert summaries(log) == [("client refused", "network", None, 2)]
    assert suppressed(metrics, "tls_handshake_failed") == 0
    assert suppressed(metrics, "client_refused") == 2


async def test_the_summary_has_the_level_of_the_lines_it_stands_for() -> None:
    lines, log, _, _ = door(burst=1, interval=60.0)
    for _ in range(3):
        lines.info("tls handshake failed", "protocol", kind="implicit", client_ip="192.0.2.1")
        lines.warning("tls handshake failed", "protocol", kind="starttls", client_ip="192.0.2.1")
    lines.close()
    assert sorted((e["kind"], e["level"]) for e in log.events() if e["event"] == SUPPRESSED) == [
        ("implicit", "info"),
        ("starttls", "warning"),
    ]


async def test_the_tls_port_refusals_have_a_window_of_their_own() -> None:
    lines, log, _, _ = door(burst=1, interval=60.0)
    for _ in range(3):
        lines.warning("client refused", "max_connections", stage="tls", client_ip="192.0.2.1")
    lines.warning("client refused", "max_connections", client_ip="192.0.2.2")  # the plain port
    lines.close()
    written = [e for e in log.events() if e["event"] == "client refused"]
    assert [(e.get("stage"), e["client_ip"]) for e in written] == [
        ("tls", "192.0.2.1"),
        (None, "192.0.2.2"),
    ]
    [summary] = [e for e in log.events() if e["event"] == SUPPRESSED]
    assert (summary["reason"], summary["stage"], summary["suppressed"]) == (
        "max_connections", "tls", 2,
    )  # fmt: skip


async def test_past_256_keys_the_shared_window_still_names_its_event() -> None:
    lines, log, metrics, _ = door(burst=1, interval=60.0)
    for i in range(256):  # a bug that made reasons unbounded
        lines.warning("client refused", f"reason{i}", client_ip="192.0.2.1")
    for i in range(3):
        lines.info("tls handshake failed", f"new{i}", kind="implicit", client_ip="192.0.2.1")
        lines.warning("proxy header refused", f"new{i}", peer_ip="192.0.2.1")
    lines.close()
    assert sorted(summaries(log)) == [
        ("proxy header refused", "other", None, 2),
        ("tls handshake failed", "other", None, 2),
    ]
    assert suppressed(metrics, "proxy_header_refused") == 2


async def test_a_reason_among_the_fields_is_no_error_the_counted_one_is_written() -> None:
    lines, log, _, _ = door(burst=100, interval=60.0)
    fields: dict[str, Any] = {"reason": "typo", "event": "typo", "client_ip": "192.0.2.1"}
    lines.warning("client refused", "network", **fields)
    lines.close()
    assert log.events() == [
        {"event": "client refused", "level": "warning", "reason": "network",
         "client_ip": "192.0.2.1"},
    ]  # fmt: skip


@pytest.mark.parametrize("value", ["inf", "nan", "1e-9", "0.5", "86401", "-1"])
def test_an_interval_that_would_turn_the_limit_off_or_silence_the_door_is_refused(
    tmp_path: Path, value: str
) -> None:
    path = tmp_path / "ccguard.toml"
    path.write_text(f"[logging]\ndoor_log_interval = {value}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "logging.door_log_interval" in str(err.value)


@pytest.mark.parametrize("value", ["0", "1", "60.0", "86400"])
def test_an_interval_of_0_or_1_second_to_a_day_is_accepted(tmp_path: Path, value: str) -> None:
    path = tmp_path / "ccguard.toml"
    path.write_text(f"[logging]\ndoor_log_interval = {value}\n")
    assert load_settings(path).logging.door_log_interval == float(value)
