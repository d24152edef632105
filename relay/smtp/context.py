"""What every SMTP session shares: settings, collaborators and the session registry."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from relay.settings import LimitsSettings, LoggingSettings, SmtpSettings
from relay.smtp.access import RelayAccess
from relay.smtp.auth import SmtpAuthenticator
from relay.smtp.budget import InflightBudget
from relay.smtp.door_log import DoorLog
from relay.smtp.limits import ConnectionLimits, MessageRate
from relay.smtp.pipeline import Decider, Dispatcher, SmtpMetrics
from relay.smtp.proxy import ProxyGate
from relay.smtp.tls import ServerTls
from relay.upstream import UpstreamClient

if TYPE_CHECKING:
    from relay.smtp.session import SessionHandler

__all__ = ["FrontContext", "SessionRegistry"]


class SessionRegistry:
    """Open sessions, so shutdown can close idle ones and wait for busy ones."""

    def __init__(self) -> None:
        self.closing = False
        self._sessions: set[SessionHandler] = set()
        self._messages: set[asyncio.Future[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._gone = asyncio.Event()  # no session left (each one's cleanup done)
        self._gone.set()

    def add(self, session: SessionHandler) -> None:
        self._sessions.add(session)
        self._gone.clear()

    def discard(self, session: SessionHandler) -> None:
        self._sessions.discard(session)
        if not self._sessions:
            self._gone.set()
        self.update()

    def track(self, task: asyncio.Future[Any]) -> None:
        """Keep a message being finished alive, and let shutdown wait for it."""
        self._messages.add(task)
        self._idle.clear()
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._messages.discard(task)
        self.update()

    def update(self) -> None:
        """Recompute whether any transaction is in flight."""
        if self._messages or any(s.in_transaction for s in self._sessions):
            self._idle.clear()
        else:
            self._idle.set()

    def close_idle(self) -> None:
        """Say 421 to and close every session with no transaction in flight."""
        for session in list(self._sessions):
            if not session.in_transaction:
                session.close_for_shutdown()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no transaction is in flight; False if ``timeout`` ran out first."""
        self.update()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def cancel_messages(self) -> None:
        """Cancel messages still being finished after the grace period, and wait for them.

        A cancelled delivery closes its upstream connection mid-DATA, so the
        upstream discards the message: nothing is half delivered.
        """
        tasks = list(self._messages)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close_all(self) -> None:
        for session in list(self._sessions):
            session.close_for_shutdown()

    async def wait_gone(self, timeout: float) -> bool:
        """Wait until every session has ended, its upstream transaction closed or
        returned (so the pool can be closed after); False if ``timeout`` ran out."""
        try:
            await asyncio.wait_for(self._gone.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def __len__(self) -> int:
        return len(self._sessions)


@dataclass
class FrontContext:
    """Everything a :class:`relay.smtp.session.SessionHandler` needs, passed explicitly."""

    settings: SmtpSettings
    upstream: UpstreamClient
    decider: Decider
    dispatcher: Dispatcher
    log: Any
    redact: Callable[[str], str]
    metrics: SmtpMetrics | None = None
    #: The listener's certificate (``None``: no TLS configured).
    tls: ServerTls | None = None
    #: SMTP AUTH checks (``None``: no ``[smtp.auth] users_file``, AUTH not offered).
    auth: SmtpAuthenticator | None = None
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    #: ``[logging]``: how many door lines (refusals, failed handshakes) are written.
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    #: Unlimited unless given (``relay.app`` passes ``[limits] max_inflight_bytes``).
    budget: InflightBudget = field(default_factory=lambda: InflightBudget(sys.maxsize))
    access: RelayAccess = field(init=False)
    connections: ConnectionLimits = field(init=False)
    #: Implicit-TLS handshakes in progress (not sessions yet), under the same limits.
    handshakes: ConnectionLimits = field(init=False)
    rate: MessageRate = field(init=False)
    #: Set when ``[smtp] proxy_protocol`` is on.
    proxy: ProxyGate | None = field(init=False)
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    #: The door's log lines, at most ``[logging] door_log_burst`` per interval and reason.
    door: DoorLog = field(init=False)

    def __post_init__(self) -> None:
        self.door = DoorLog(self.log, self.logging, self.metrics)
        if self.auth is not None:
            self.auth.door = self.door
        self.access = RelayAccess(self.settings)
        self.connections = ConnectionLimits(self.limits)
        self.handshakes = ConnectionLimits(self.limits)
        self.rate = MessageRate(self.limits)
        self.proxy = (
            ProxyGate(self.settings.proxy_trusted) if self.settings.proxy_protocol else None
        )

    def refused(self, reason: str) -> None:
        """Count one connection refused (or closed unanswered) at the door."""
        if self.metrics is not None:
            self.metrics.connection_refused(reason)

    def disconnected(self, reason: str) -> None:
        """Count one session ccguard closed after the greeting for what the client did."""
        if self.metrics is not None:
            self.metrics.client_disconnected(reason)
