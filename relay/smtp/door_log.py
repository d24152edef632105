"""The log lines of connections turned away at the door, throttled.

``client refused``, ``tls handshake failed`` and ``proxy header refused`` are
one line per connection: a scanner or a botnet opening thousands of connections
a second from outside ``allowed_networks`` (or sending TLS garbage to port 465)
would write thousands of lines a second, fill the disk and so make the
quarantine fail.  Postfix's postscreen leaves this to syslog's rate limit; ccguard
writes to stdout, so it limits itself: per event and reason (and ``kind`` for
TLS), ``[logging] door_log_burst`` lines per ``door_log_interval`` seconds, then
one warning ``door log lines suppressed`` with the count once the interval is
over.  The metrics still count every connection; the dropped lines are counted in
``ccguard_log_lines_suppressed_total{event}``.

Never keyed by client IP: that would be unbounded memory under a botnet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from relay.observability.throttle import LineThrottle, Suppressed
from relay.settings import LoggingSettings
from relay.smtp.pipeline import SmtpMetrics

__all__ = ["DOOR_EVENTS", "DoorLog"]

#: The lines throttled here, and their ``event`` label in the metric.
DOOR_EVENTS = {
    "client refused": "client_refused",
    "tls handshake failed": "tls_handshake_failed",
    "proxy header refused": "proxy_header_refused",
}


class DoorLog:
    """Writes the door's lines through ``log``, at most a burst per key and interval.

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
        self._throttle = LineThrottle(
            settings.door_log_burst, settings.door_log_interval, self._summary, clock=clock
        )
        self._timer: asyncio.TimerHandle | None = None
        self._due: float | None = None

    def warning(self, event: str, reason: str, /, *, kind: str = "", **fields: Any) -> None:
        """Log ``event`` (with ``reason``, ``kind`` when given, and ``fields``) at warning."""
        if self._allow(event, reason, kind):
            self._log.warning(event, **_key_fields(reason, kind), **fields)

    def info(self, event: str, reason: str, /, *, kind: str = "", **fields: Any) -> None:
        """As :meth:`warning`, at info level."""
        if self._allow(event, reason, kind):
            self._log.info(event, **_key_fields(reason, kind), **fields)

    def close(self) -> None:
        """Cancel the timer and report every window with lines dropped (shutdown)."""
        self._disarm()
        self._throttle.flush(everything=True)

    def _allow(self, event: str, reason: str, kind: str) -> bool:
        key = (event, reason, kind)
        if self._throttle.allow(key):
            return True
        if self._metrics is not None:
            self._metrics.log_line_suppressed(DOOR_EVENTS.get(event, "other"))
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
        event, reason, kind = (*gone.key, "", "", "")[:3]
        self._log.warning(
            "door log lines suppressed",
            line=event,
            **_key_fields(reason, kind),
            suppressed=gone.count,
            interval_seconds=gone.interval,
        )


def _key_fields(reason: str, kind: str) -> dict[str, str]:
    return {"kind": kind, "reason": reason} if kind else {"reason": reason}
