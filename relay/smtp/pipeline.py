"""The seams between the SMTP front and the stages behind it.

At end of DATA the front parses the client's bytes once
(:func:`relay.inspect.parse_message`: line endings normalised to CRLF, header
block cut into fields) and asks a :class:`Decider` for a :class:`Verdict` and
hands it to a :class:`Dispatcher`, which carries it out on the live upstream
transaction and returns the reply for the client.  ``relay.app`` plugs in
:class:`InspectingDecider` and :class:`relay.actions.Dispatcher`.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from relay.codes import Reply
from relay.envelope import Envelope
from relay.inspect import CalendarLimits, ParsedMessage, inspect_message
from relay.inspect.domains import DomainMatcher
from relay.policy import evaluate
from relay.policy.verdict import Verdict
from relay.settings import InspectSettings, PolicySettings
from relay.upstream import UpstreamTransaction

__all__ = [
    "INLINE_HEADER_BYTES",
    "INLINE_MESSAGE_BYTES",
    "Decider",
    "Dispatcher",
    "InspectingDecider",
    "SmtpMetrics",
]

#: A message whose header block and whole size are within these is inspected on the
#: event loop: it takes under ~1 ms (about 70 addresses), while handing it to a
#: worker thread costs ~0.07-0.1 ms of its own; bigger ones go to a thread so a
#: 5,000-address header never stalls other sessions (docs/throughput.md).
INLINE_HEADER_BYTES = 2048
INLINE_MESSAGE_BYTES = 16 * 1024


class Decider(Protocol):
    """Inspection + policy for one message."""

    async def decide(self, envelope: Envelope, message: ParsedMessage) -> Verdict: ...


class Dispatcher(Protocol):
    """Carries out a verdict; ``message`` is the client's message as inspected,
    ``trace_header`` the Received header to prepend to whatever is delivered."""

    async def act(
        self,
        envelope: Envelope,
        message: ParsedMessage,
        verdict: Verdict,
        live: UpstreamTransaction,
        trace_header: bytes,
    ) -> Reply: ...


class SmtpMetrics(Protocol):
    """What the front reports (implemented by :class:`relay.observability.Metrics`)."""

    def observe_reply(self, stage: str, code: int) -> None: ...

    def session_opened(self) -> None: ...

    def session_closed(self) -> None: ...

    def client_hung_up(self, stage: str) -> None: ...

    def observe_message(self, verdict: Verdict, size: int, inspect_seconds: float) -> None: ...

    def line_endings_normalised_message(self) -> None: ...

    def smtp_tls_session(self, version: str) -> None: ...

    def smtp_tls_failed(self, reason: str, kind: str = ...) -> None: ...

    def smtp_auth_attempt(self, mechanism: str, result: str) -> None: ...

    def connection_refused(self, reason: str) -> None: ...

    def client_disconnected(self, reason: str) -> None: ...

    def rate_limited(self) -> None: ...

    def proxy_header_failure(self, reason: str) -> None: ...

    def accept_overdue(self) -> None: ...

    def log_line_suppressed(self, event: str) -> None: ...


class InspectingDecider:
    """Inspection then policy: inline for a small message, else in a worker thread
    (a huge header block takes a while)."""

    def __init__(
        self, matcher: DomainMatcher, inspect: InspectSettings, policy: PolicySettings
    ) -> None:
        self._matcher = matcher
        self._max_header_bytes = inspect.max_header_bytes
        self._calendar = CalendarLimits(
            inspect.max_calendar_bytes, inspect.max_mime_parts, inspect.max_mime_depth
        )
        self._policy = policy

    def decide_now(self, envelope: Envelope, message: ParsedMessage) -> Verdict:
        """The verdict, computed in the calling thread."""
        exposure = inspect_message(
            message,
            self._matcher,
            max_header_bytes=self._max_header_bytes,
            calendar_limits=self._calendar,
        )
        return evaluate(exposure, envelope, self._policy)

    async def decide(self, envelope: Envelope, message: ParsedMessage) -> Verdict:
        if message.body_offset <= INLINE_HEADER_BYTES and message.size <= INLINE_MESSAGE_BYTES:
            return self.decide_now(envelope, message)
        return await asyncio.to_thread(self.decide_now, envelope, message)
