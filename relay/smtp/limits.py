"""Abuse limits of the SMTP front: open connections (total, per client IP), message
rate, and the errors and junk commands of one session.

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

__all__ = ["JUNK_COMMANDS", "ConnectionLimits", "ErrorCount", "MessageRate", "is_client_error"]

_WINDOW = 60.0

#: Commands that do nothing for delivery (Postfix's smtpd_junk_command_limit list,
#: ETRN aside: aiosmtpd has none); over ``junk_command_limit`` each counts as an error.
JUNK_COMMANDS = frozenset({"NOOP", "RSET", "VRFY", "HELP"})
# The 4xx replies the client brought on itself.  Every other 4xx is ccguard's or the
# upstream's trouble (upstream down or deferring, in-flight budget, store, internal
# error, shutdown), the upstream's own verdict on a recipient, or the normal
# "452 too many recipients" exchange: none of them may cost a client its connection.
_CLIENT_4XX = frozenset(str(r).encode() for r in (codes.RATE_LIMITED, codes.AUTH_THROTTLED))
# The 5xx replies that are not the client's doing: the upstream lacks 8BITMIME.
_NOT_CLIENT_5XX = frozenset(str(r).encode() for r in (codes.NO_8BITMIME,))


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


def is_client_error(reply: bytes) -> bool:
    """Whether the final line ``reply`` counts as one of the client's errors
    (docs/front-door.md, "Errors and junk commands")."""
    if reply[:1] == b"5":
        return reply not in _NOT_CLIENT_5XX
    return reply[:1] == b"4" and reply in _CLIENT_4XX


class ErrorCount:
    """One session's errors and junk commands since its last accepted message, like
    Postfix's smtpd_soft_error_limit, smtpd_hard_error_limit, smtpd_junk_command_limit."""

    def __init__(self, settings: LimitsSettings) -> None:
        self._soft = settings.soft_error_limit
        self._sleep = settings.error_sleep
        self._hard = settings.hard_error_limit
        self._junk_limit = settings.junk_command_limit
        self.errors = 0
        self._junk = 0

    def junk(self) -> bool:
        """Count one junk command; True when it is over the limit (its reply is an error)."""
        self._junk += 1
        return 0 < self._junk_limit < self._junk

    def reply(self, reply: bytes, *, junk: bool = False, end_of_data: bool = False) -> float:
        """Count the final line ``reply`` (``junk``: of a junk command over its limit);
        the seconds to wait before sending it.

        A 2xx at the end of DATA is an accepted message: the counts start again."""
        if end_of_data and reply[:1] == b"2":
            self.errors = self._junk = 0
            return 0.0
        if not (junk or is_client_error(reply)):
            return 0.0
        self.errors += 1
        return self._sleep if 0 < self._soft < self.errors else 0.0

    @property
    def exhausted(self) -> bool:
        """The hard limit is reached: the session is to be closed."""
        return 0 < self._hard <= self.errors
