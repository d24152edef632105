"""Slow down password guessing: per-client-IP and per-username backoff, in memory.

After ``free`` failures in a row, a key (an IP or a user name) must wait
``base * 2**(extra failures)`` seconds (capped at ``cap``) before its next
attempt is even checked.  A success clears the user's key (not the IP's: one
good account must not unlock guessing at others).  At most ``max_keys`` keys
are kept; the oldest are forgotten first, so memory stays bounded.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["LoginThrottle"]


@dataclass(slots=True)
class _Record:
    failures: int
    not_before: float


class LoginThrottle:
    """Tracks failed logins; :meth:`wait_for` says how long a client must still wait."""

    def __init__(
        self,
        *,
        free: int = 3,
        base: float = 1.0,
        cap: float = 60.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.base, self.cap, self.max_keys = free, base, cap, max_keys
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()

    @staticmethod
    def _keys(ip: str, user: str) -> tuple[str, str]:
        return f"ip:{ip}", f"user:{user.lower()}"

    def wait_for(self, ip: str, user: str) -> float:
        """Seconds the attempt must still wait (0 when it may be checked now)."""
        now = self._clock()
        waits = [
            rec.not_before - now
            for key in self._keys(ip, user)
            if (rec := self._records.get(key)) is not None
        ]
        return max([0.0, *waits])

    def failure(self, ip: str, user: str) -> None:
        """Record one failed attempt from ``ip`` for ``user``."""
        now = self._clock()
        for key in self._keys(ip, user):
            rec = self._records.pop(key, None) or _Record(0, now)
            rec.failures += 1
            extra = rec.failures - self.free
            delay = 0.0 if extra < 0 else min(self.cap, self.base * 2.0 ** min(extra, 30))
            rec.not_before = now + delay
            self._records[key] = rec
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)

    def success(self, ip: str, user: str) -> None:
        """A correct password: forget the user's failures."""
        self._records.pop(self._keys(ip, user)[1], None)
