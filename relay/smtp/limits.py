"""Abuse limits of the SMTP front: open connections (total, per client IP) and message rate.

Like Postfix's anvil, the counts live in memory in this one process; a pair of
ccguard instances behind a load balancer each enforce their own limits.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable

from relay import codes
from relay.codes import Reply
from relay.settings import LimitsSettings
from relay.smtp.access import NetworkAccess

__all__ = ["ConnectionLimits", "MessageRate"]

_WINDOW = 60.0


class ConnectionLimits:
    """Counts admitted sessions, in total and per client IP."""

    def __init__(self, settings: LimitsSettings) -> None:
        self._max_total = settings.max_connections
        self._max_per_ip = settings.max_connections_per_ip
        self._total = 0
        self._per_ip: Counter[str] = Counter()

    def admit(self, ip: str | None) -> tuple[Reply, str] | None:
        """Count a session from ``ip``; or the refusal and its metric reason when over a limit.

        ``None``: counted in the total only (a trusted load balancer speaks for many).
        An admitted session must be given back with :meth:`release`.
        """
        if self._total >= self._max_total:
            return codes.TOO_MANY_CONNECTIONS, "max_connections"
        if ip is not None and self._per_ip[ip] >= self._max_per_ip:
            return codes.TOO_MANY_CONNECTIONS, "max_connections_per_ip"
        self._total += 1
        if ip is not None:
            self._per_ip[ip] += 1
        return None

    def release(self, ip: str | None) -> None:
        """One admitted session from ``ip`` ended."""
        self._total -= 1
        if ip is None:
            return
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]

    @property
    def open(self) -> int:
        return self._total


class MessageRate:
    """A sliding one-minute window of MAIL FROM commands per user (or client IP)."""

    def __init__(
        self, settings: LimitsSettings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit = settings.messages_per_minute
        self._exempt = NetworkAccess(settings.rate_exempt_networks)
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._next_sweep = 0.0

    def allow(self, user: str | None, ip: str) -> bool:
        """Count one message for ``user`` (when authenticated) else ``ip``; False when over.

        A refused attempt is not counted, so a client that keeps retrying is let
        through again once its older messages leave the window.
        """
        if self._limit is None or self._exempt.allows(ip):
            return True
        now = self._clock()
        self._sweep(now)
        key = f"user:{user}" if user else f"ip:{ip}"
        times = self._seen.setdefault(key, deque())
        while times and times[0] <= now - _WINDOW:
            times.popleft()
        if len(times) >= self._limit:
            return False
        times.append(now)
        return True

    def _sweep(self, now: float) -> None:
        # Forget senders idle for a whole window, so the map stays as small as the traffic.
        if now < self._next_sweep:
            return
        self._next_sweep = now + _WINDOW
        for key in [k for k, t in self._seen.items() if not t or t[-1] <= now - _WINDOW]:
            del self._seen[key]
