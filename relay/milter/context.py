"""What the milter front needs from the rest of ccguard, handed over by ``relay.app``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from structlog.typing import FilteringBoundLogger

from relay.actions.ports import LiveTransaction, Redact
from relay.codes import Reply
from relay.envelope import Envelope
from relay.inspect.domains import DomainMatcher
from relay.inspect.parsed import ParsedMessage
from relay.policy.verdict import Verdict
from relay.settings import MilterSettings
from relay.smtp.budget import InflightBudget
from relay.smtp.pipeline import Decider

__all__ = ["MilterContext", "MilterDispatcher", "MilterFrontMetrics"]


class MilterDispatcher(Protocol):
    """Carries out a verdict (implemented by :class:`relay.actions.Dispatcher`)."""

    async def act(
        self,
        envelope: Envelope,
        message: ParsedMessage,
        verdict: Verdict,
        live: LiveTransaction,
        trace_header: bytes,
    ) -> Reply: ...


class MilterFrontMetrics(Protocol):
    """What the milter reports (implemented by :class:`relay.observability.Metrics`)."""

    def observe_message(
        self, verdict: Verdict, size: int, inspect_seconds: float, front: str = "smtp"
    ) -> None: ...

    def milter_reply(self, reply: str) -> None: ...

    def milter_error(self, kind: str) -> None: ...

    def milter_connection(self, delta: int) -> None: ...


@dataclass(frozen=True, slots=True)
class MilterContext:
    """The milter front's collaborators: the same decider and dispatcher as the SMTP front."""

    settings: MilterSettings
    decider: Decider
    dispatcher: MilterDispatcher
    matcher: DomainMatcher
    log: FilteringBoundLogger
    redact: Redact
    metrics: MilterFrontMetrics | None
    max_message_size: int
    #: ``[limits] max_inflight_bytes``, the one budget the SMTP front uses too.
    budget: InflightBudget | None = None
