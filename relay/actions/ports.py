"""What the actions need from the parts around them, as structural types.

:class:`relay.upstream.UpstreamClient`, its ``UpstreamTransaction`` and
:class:`relay.observability.Metrics` satisfy these without knowing them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

from relay.codes import Reply

__all__ = [
    "AcceptHook",
    "ActionMetrics",
    "BeforeData",
    "Deliverer",
    "DeliveryOutcome",
    "LiveTransaction",
    "Redact",
    "domain_only",
]

Redact = Callable[[str], str]
# Awaited with the accepted recipients as soon as the upstream's 250 is read.
AcceptHook = Callable[[Sequence[str]], Awaitable[None]]
# Called once the recipients are accepted, right before DATA: raising aborts (RSET).
BeforeData = Callable[[], None]


class LiveTransaction(Protocol):
    """The upstream transaction the SMTP front opened at MAIL FROM."""

    async def data(self, *pieces: bytes | memoryview) -> Reply:
        """Send the message made of ``pieces`` (never joined); return the 250 or raise
        UpstreamError."""
        ...

    async def abort(self) -> None:
        """RSET: nothing is delivered; the connection goes back to the pool."""
        ...


class DeliveryOutcome(Protocol):
    """What the upstream said to a whole delivery it accepted."""

    @property
    def reply(self) -> Reply: ...

    @property
    def refused(self) -> Mapping[str, Reply]: ...


class Deliverer(Protocol):
    """A whole upstream transaction (MAIL, RCPTs, DATA)."""

    async def deliver(
        self,
        mail_from: str,
        rcpts: Sequence[str],
        message: bytes | tuple[bytes | memoryview, ...],
        options: Sequence[str] = (),
        *,
        on_accept: AcceptHook | None = None,
        before_data: BeforeData | None = None,
    ) -> DeliveryOutcome:
        """Accepted for at least one recipient, or raise UpstreamError.  A tuple
        ``message`` is sent as its pieces joined, without joining them.  ``on_accept``
        is awaited after the 250, before anything else; what it raises is raised.
        ``before_data()`` is called right before DATA; if it raises, the
        transaction is aborted (nothing delivered) and that is raised."""
        ...


class ActionMetrics(Protocol):
    """The counters the actions report to."""

    def store_error(self) -> None: ...

    def notification(self, result: str) -> None: ...

    def claim_event(self, kind: str, event: str) -> None: ...


def domain_only(address: str) -> str:
    """A stand-in for an address in logs when no keyed hash is configured: ``*@domain``."""
    return "*@" + address.rpartition("@")[2] if address else "<>"
