"""The log lines of connections turned away at the door, throttled.

``client refused``, ``tls handshake failed`` and ``proxy header refused`` are
one line per connection: a scanner or a botnet opening thousands of connections
a second from outside ``allowed_networks`` (or sending TLS garbage to port 465)
would write thousands of lines a second, fill the disk and so make the
quarantine fail.  Postfix's postscreen leaves this to syslog's rate limit; ccguard
writes to stdout, so it limits itself: per event, reason, TLS ``kind`` and
``stage``, ``[logging] door_log_burst`` lines per ``door_log_interval`` seconds,
then one ``door log lines suppressed`` line with the count once the interval is
over, at the level of the lines it stands for.  The metrics still count every
connection; the dropped lines are counted in
``ccguard_log_lines_suppressed_total{event}``.  A line below ``[logging] level``
is not written anyway, so it is neither throttled nor counted.

Never keyed by client IP: that would be unbounded memory under a botnet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from relay.observability.throttle import Key, LineThrottle, Suppressed
from relay.settings import LoggingSettings
from relay.smtp.pipeline import SmtpMetrics

__all__ = ["DOOR_EVENTS", "DoorLog"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}

#: The lines throttled here, and their ``event`` label in the metric.
DOOR_EVENTS = {
    "client refused": "client_refused",
    "tls handshake failed": "tls_handshake_failed",
    "proxy header refused": "proxy_header_refused",
    "smtp auth failed": "smtp_auth_failed",
}
#: The field a line writes its key's reason as, where it is not ``reason``.
_REASON_FIELD = {"smtp auth failed": "result"}


class DoorLog:
    """Writes the door's lines through ``log``, at most a burst per key and interval.

    A key is ``(event, reason, kind, stage, level)``, all from fixed sets; past
    256 keys, new ones share one window per event and level (``reason="other"``).
    A flood that stops still gets its summary within about one interval: when
    a window first drops a line, a timer (``loop.call_later``, no task) is set
    for its end; :meth:`close` cancels it and reports what is pending.
    """

    def __init__(
        self,
        log: Any,
        settings: LoggingSettings,
        metrics: SmtpMetrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._metrics = metrics
        self._clock = clock
        self._floor = _LEVELS[settings.level]
        self._throttle = LineThrottle(
            settings.door_log_burst,
            settings.door_log_interval,
            self._summary,
            clock=clock,
            overflow=_overflow,
        )
        self._timer: asyncio.TimerHandle | None = None
        self._due: float | None = None

    def warning(
        self, event: str, reason: str, /, *, kind: str = "", stage: str = "", **fields: Any
    ) -> None:
        """Log ``event`` (with ``reason``, ``kind`` and ``stage`` when given, and
        ``fields``) at warning; ``reason`` in ``fields`` is overridden, not an error."""
        self._write("warning", event, (event, reason, kind, stage, "warning"), fields)

    def info(
        self, event: str, reason: str, /, *, kind: str = "", stage: str = "", **fields: Any
    ) -> None:
        """As :meth:`warning`, at info level."""
        self._write("info", event, (event, reason, kind, stage, "info"), fields)

    def close(self) -> None:
        """Cancel the timer and report every window with lines dropped (shutdown)."""
        self._disarm()
        self._throttle.flush(everything=True)

    def _write(self, level: str, event: str, key: Key, fields: dict[str, Any]) -> None:
        if _LEVELS[level] < self._floor:
            return  # the logger would drop it: nothing to leave out, nothing to count
        if self._allow(key):
            named = _key_fields(key)  # what the line was counted as wins over ``fields``
            rest = {k: v for k, v in fields.items() if k not in named and k != "event"}
            getattr(self._log, level)(event, **named, **rest)

    def _allow(self, key: Key) -> bool:
        if self._throttle.allow(key):
            return True
        if self._metrics is not None:
            self._metrics.log_line_suppressed(DOOR_EVENTS.get(key[0], "other"))
        end = self._throttle.ends_at(key)
        if end is not None and (self._due is None or end < self._due):
            self._arm(end)
        return False

    def _arm(self, end: float) -> None:
        self._disarm()
        self._due = end
        delay = max(0.0, end - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._flush)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._due = None

    def _flush(self) -> None:
        self._timer = self._due = None
        due = self._throttle.flush()
        if due is not None:
            self._arm(due)

    def _summary(self, gone: Suppressed) -> None:
        getattr(self._log, gone.key[4])(
            "door log lines suppressed",
            line=gone.key[0],
            **_key_fields(gone.key),
            suppressed=gone.count,
            interval_seconds=gone.interval,
            window_seconds=round(gone.seconds, 3),
        )


def _key_fields(key: Key) -> dict[str, str]:
    """``reason`` (``result`` for AUTH), and ``kind`` and ``stage`` when set, of a key."""
    event, reason, kind, stage, _ = key
    fields = {"kind": kind} if kind else {}
    fields[_REASON_FIELD.get(event, "reason")] = reason
    if stage:
        fields["stage"] = stage
    return fields


def _overflow(key: Key) -> Key:
    """The shared window of a key past the 256th: its event (if a door event) and level."""
    event = key[0] if key[0] in DOOR_EVENTS else "other"
    return (event, "other", "", "", key[4])
