"""A real aiosmtpd server on 127.0.0.1 that records what it receives, with faults on demand."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiosmtpd.smtp import SMTP

from tests.helpers.waiting import Gate, wait_until

if TYPE_CHECKING:
    from relay.app import Relay

__all__ = ["Received", "RecordingUpstream", "no_upstream_connection_left_over", "serve_loopback"]


async def serve_loopback(
    factory: Callable[[], asyncio.BaseProtocol], port: int = 0
) -> tuple[asyncio.Server, int]:
    """Listen on 127.0.0.1 (port 0: a free one); the server and the port it got.
    ``reuse_address``: a test may start a server again on the port it had."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host="127.0.0.1", port=port, reuse_address=True)
    return server, server.sockets[0].getsockname()[1]


@dataclass
class Received:
    """One message the upstream accepted."""

    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    data: bytes


@dataclass
class RecordingUpstream:
    """Upstream SMTP server for tests.

    Faults: ``refuse_rcpt`` maps an address to the reply its RCPT gets (``refuse_mail``:
    a sender to the reply its MAIL gets);
    ``data_hook(envelope)`` may return a reply string for DATA (e.g. ``"451 4.3.0 later"``),
    ``"HANG"`` to never answer, or ``"DISCONNECT"`` to drop the connection.
    ``data_gate(envelope)`` / ``rcpt_gate(address)`` are awaited before DATA / RCPT
    is answered (e.g. ``tests.helpers.waiting.Gate.hold``): tests wait for events,
    not for sleeps.
    """

    messages: list[Received] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)
    refuse_mail: dict[str, str] = field(default_factory=dict)  # sender -> its MAIL reply
    data_hook: Callable[[Any], str | None] | None = None
    data_delay: float = 0.0
    rcpt_delay: float = 0.0
    data_gate: Callable[[Any], Awaitable[None]] | None = None
    rcpt_gate: Callable[[str], Awaitable[None]] | None = None
    rcpts_answered: list[str] = field(default_factory=list)
    eight_bit: bool = True  # False: no 8BITMIME in EHLO (aiosmtpd decode_data mode)
    data_started: int = 0
    connections: int = 0
    open_connections: int = 0  # open right now (the ones ccguard has not closed)
    mail_commands: int = 0
    rset_commands: int = 0
    gate: Gate | None = None
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> RecordingUpstream:
        loop = asyncio.get_running_loop()

        def factory() -> SMTP:
            self.connections += 1
            return _CountingSMTP(
                self,
                _Handler(self),
                hostname="upstream.test",
                enable_SMTPUTF8=True,
                decode_data=not self.eight_bit,
                data_size_limit=None,
                loop=loop,
            )

        self._server, self.port = await serve_loopback(factory, port)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until ``count`` messages arrived (or fail the test)."""
        await wait_until(
            lambda: len(self.messages) >= count,
            lambda: f"upstream got {len(self.messages)} messages, wanted {count}",
            timeout,
        )
        return self.messages


class _CountingSMTP(SMTP):
    """aiosmtpd's SMTP, counting the connections open right now."""

    def __init__(self, upstream: RecordingUpstream, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._up = upstream

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # not again for the TLS transport after STARTTLS
            self._up.open_connections += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._up.open_connections -= 1
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._up.gate is not None:
            await self._up.gate.hold("banner")
        await super()._handle_client()

    async def push(self, status: Any) -> None:
        await super().push(status)
        if self._up.gate is not None:
            self._up.gate.answered()


class _Handler:
    def __init__(self, upstream: RecordingUpstream) -> None:
        self.up = upstream

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        if self.up.gate is not None:
            await self.up.gate.hold("EHLO")
        session.host_name = hostname
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.up.mail_commands += 1
        if self.up.gate is not None:
            await self.up.gate.hold("MAIL")
        if address in self.up.refuse_mail:
            return self.up.refuse_mail[address]
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        self.up.rset_commands += 1
        return "250 2.0.0 Ok"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.up.rcpt_delay:
            await asyncio.sleep(self.up.rcpt_delay)
        if self.up.gate is not None:
            await self.up.gate.hold("RCPT")
        if self.up.rcpt_gate is not None:
            await self.up.rcpt_gate(address)
        self.up.rcpts_answered.append(address)
        refusal = self.up.refuse_rcpt.get(address)
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.up.data_started += 1
        if self.up.data_delay:
            await asyncio.sleep(self.up.data_delay)
        if self.up.data_gate is not None:
            await self.up.data_gate(envelope)
        fault = self.up.data_hook(envelope) if self.up.data_hook else None
        if fault == "HANG":
            await asyncio.sleep(3600)
        if fault == "DISCONNECT":
            server.transport.close()
            await asyncio.sleep(0.05)
            return "421 4.3.0 gone"
        if fault:
            return fault
        self.up.messages.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                mail_options=list(envelope.mail_options),
                data=envelope.original_content,
            )
        )
        return "250 2.0.0 Ok: queued"


async def no_upstream_connection_left_over(relay: Relay, upstream: RecordingUpstream) -> None:
    """Every connection ccguard still holds open upstream is an idle one in its pool."""
    await wait_until(
        lambda: upstream.open_connections == relay.upstream.pool.idle_count,
        lambda: (
            f"{upstream.open_connections} upstream connections open, "
            f"{relay.upstream.pool.idle_count} of them idle in the pool"
        ),
    )
