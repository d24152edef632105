"""Abuse limits of the SMTP front: open connections (total, per client IP), message
rate, and the errors and junk commands of one session.

Like Postfix's anvil, the counts live in memory in this one process; a pair of
ccguard instances behind a load balancer each enforce their own limits.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from enum import Enum

from relay import codes
from relay.codes import Reply
from relay.settings import LimitsSettings
from relay.smtp.access import NetworkAccess

__all__ = [
    "JUNK_COMMANDS",
    "ConnectionLimits",
    "ErrorCount",
    "MessageRate",
    "ReplyKind",
    "unmarked_kind",
]

_WINDOW = 60.0

#: Commands that do nothing for delivery (Postfix's smtpd_junk_command_limit list,
#: ETRN aside: aiosmtpd has none); over ``junk_command_limit`` each counts as an error.
JUNK_COMMANDS = frozenset({"NOOP", "RSET", "VRFY", "HELP"})


class ReplyKind(Enum):
    """Where a reply comes from, for the error count (docs/front-door.md,
    "Errors and junk commands"); set where the reply is produced."""

    #: The client's protocol fault or abuse: counts.
    FAULT = "fault"
    #: The upstream's answer passed on, a verdict on the content, or ccguard's own
    #: trouble: neither counts nor resets the count.
    NOT_THE_CLIENTS = "not the client's"
    #: A message accepted (2xx at the end of DATA): the count starts again.
    ACCEPTED = "accepted"
    #: ``452 4.5.3 Too many recipients``: counts only beyond ``recipient_overshoot_limit``.
    OVER_MAX_RECIPIENTS = "over max_recipients"


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


def unmarked_kind(reply: bytes) -> ReplyKind:
    """The kind of a final line nobody marked: aiosmtpd's own answer to a command
    (unknown, syntax, sequence, AUTH) or ccguard's front-door check.  Those 5xx are
    the client's fault; those 4xx are ccguard's trouble (or marked where they are not)."""
    return ReplyKind.FAULT if reply[:1] == b"5" else ReplyKind.NOT_THE_CLIENTS


class ErrorCount:
    """One session's errors and junk commands since its last accepted message, like
    Postfix's smtpd_soft_error_limit, smtpd_hard_error_limit, smtpd_junk_command_limit
    and smtpd_recipient_overshoot_limit."""

    def __init__(self, settings: LimitsSettings) -> None:
        self._soft = settings.soft_error_limit
        self._sleep = settings.error_sleep
        self._hard = settings.hard_error_limit
        self._junk_limit = settings.junk_command_limit
        self._overshoot_limit = settings.recipient_overshoot_limit
        self.errors = 0
        #: The hard limit is reached: the session is to be closed (once no transaction
        #: holding a recipient is open).  An attribute: it is read after every reply.
        self.exhausted = False
        self._junk = 0
        self._overshoot = 0  # 452 4.5.3 replies in this transaction
        self._junk_reply = False  # this command's reply counts (a junk command over the limit)
        self._kind: ReplyKind | None = None

    def command(self, name: str, *, junk: bool) -> None:
        """A command ``name`` starts (``junk``: one of :data:`JUNK_COMMANDS`)."""
        self._kind = None
        if name == "MAIL":
            self._overshoot = 0
        if junk:
            self._junk += 1
        self._junk_reply = junk and 0 < self._junk_limit < self._junk

    def mark(self, kind: ReplyKind) -> None:
        """The next final reply is of ``kind`` (called where that reply is produced)."""
        self._kind = kind

    def reply(self, reply: bytes) -> float:
        """Count the final line ``reply``; the seconds to wait before sending it."""
        if self._kind is None and not self._junk_reply and reply[:1] != b"5":
            return 0.0  # the common case, decided without the rest (called on every reply)
        kind = self._kind or unmarked_kind(reply)
        self._kind = None
        junk, self._junk_reply = self._junk_reply, False
        if kind is ReplyKind.ACCEPTED and reply[:1] == b"2":
            self.errors = self._junk = 0
            self.exhausted = False
            return 0.0
        if kind is ReplyKind.OVER_MAX_RECIPIENTS:
            self._overshoot += 1
            if self._overshoot > self._overshoot_limit:
                kind = ReplyKind.FAULT
        if not (junk or kind is ReplyKind.FAULT):
            return 0.0
        self.errors += 1
        self.exhausted = 0 < self._hard <= self.errors
        return self._sleep if 0 < self._soft < self.errors else 0.0
