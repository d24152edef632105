"""At most a burst of log lines per key and interval, then one count of the rest.

Like journald's ``RateLimitIntervalSec``/``RateLimitBurst``: the first line of a
key opens its window; up to ``burst`` lines are written in it and the others are
dropped; once the window is over, its dropped lines are reported once (a
:class:`Suppressed`) and the next line opens a new window.  Keys are chosen by
the caller from small fixed sets (an event and its reason, never a client
address), and there are at most ``max_keys`` of them: past that, a new key goes
to the window ``overflow(key)`` names (by default one shared :data:`OVERFLOW_KEY`;
the caller may keep part of the key, e.g. the event, if that part comes from a
fixed set), so a bug that made keys unbounded still costs bounded memory.

The clock is injected, so the tests need no sleeps; nothing here writes or waits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["OVERFLOW_KEY", "Key", "LineThrottle", "Suppressed"]

Key = tuple[str, ...]

#: The window shared by keys that came after ``max_keys`` others (the default ``overflow``).
OVERFLOW_KEY: Key = ("other",)


def _shared_overflow(key: Key) -> Key:
    return OVERFLOW_KEY


@dataclass(frozen=True, slots=True)
class Suppressed:
    """``count`` lines of ``key`` were dropped in one window of ``interval`` seconds,
    which lasted ``seconds``: ``interval``, or less when reported early (shutdown)."""

    key: Key
    count: int
    interval: float
    seconds: float


@dataclass(slots=True)
class _Window:
    start: float
    written: int = 0
    dropped: int = 0


class LineThrottle:
    """Decides which lines of each key are written; ``burst`` or ``interval`` 0: all.

    ``report`` is called with each window that ended with lines dropped: by
    :meth:`allow` when the key's next line comes, or by :meth:`flush`.
    """

    def __init__(
        self,
        burst: int,
        interval: float,
        report: Callable[[Suppressed], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 256,
        overflow: Callable[[Key], Key] = _shared_overflow,
    ) -> None:
        self.burst = burst
        self.interval = interval
        self._report = report
        self._clock = clock
        self._max_keys = max_keys
        self._overflow = overflow
        self._windows: dict[Key, _Window] = {}

    @property
    def enabled(self) -> bool:
        """False when every line is written (a burst or an interval of 0)."""
        return self.burst > 0 and self.interval > 0

    def allow(self, key: Key) -> bool:
        """Whether this line of ``key`` is written; a dropped one is counted."""
        if not self.enabled:
            return True
        now = self._clock()
        window = self._window(key, now)
        if window.written < self.burst:
            window.written += 1
            return True
        window.dropped += 1
        return False

    def ends_at(self, key: Key) -> float | None:
        """When the window of ``key`` (or the overflow one it went to) ends, on the clock."""
        window = self._windows.get(key) or self._windows.get(self._overflow(key))
        return window.start + self.interval if window is not None else None

    def flush(self, *, everything: bool = False) -> float | None:
        """Report every window that is over (``everything``: every window) with lines
        dropped, and forget the windows that are over; when the next window with
        lines dropped ends (``None``: none is left)."""
        now = self._clock()
        due: float | None = None
        for key, window in list(self._windows.items()):
            end = window.start + self.interval
            if now < end and not everything:
                if window.dropped and (due is None or end < due):
                    due = end
                continue
            del self._windows[key]
            self._said(key, window, now)
        return due

    def _window(self, key: Key, now: float) -> _Window:
        window = self._windows.get(key)
        if window is None and len(self._windows) >= self._max_keys:
            self.flush()  # windows that are over make room
            if len(self._windows) >= self._max_keys:
                key = self._overflow(key)
                window = self._windows.get(key)
        if window is not None and now - window.start < self.interval:
            return window
        if window is not None:
            self._said(key, window, now)
        window = self._windows[key] = _Window(now)
        return window

    def _said(self, key: Key, window: _Window, now: float) -> None:
        if window.dropped:
            seconds = min(self.interval, now - window.start)
            self._report(Suppressed(key, window.dropped, self.interval, seconds))
