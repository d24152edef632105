"""The aiosmtpd protocol subclass and the listener that runs it in our own loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP

from relay import codes
from relay.smtp.context import FrontContext
from relay.smtp.data import DataOutcome, read_data
from relay.smtp.session import SessionHandler

__all__ = ["GuardSMTP", "SmtpListener"]

# aiosmtpd's own replies, given the enhanced status codes and wording ccguard uses.
_TRANSLATED = {
    b"552 Error: Too much mail data": str(codes.MESSAGE_TOO_BIG).encode(),
    b"552 Error: message size exceeds fixed maximum message size": str(
        codes.MESSAGE_TOO_BIG
    ).encode(),
    b"500 Line too long (see RFC5321 4.5.3.1.6)": str(codes.LINE_TOO_LONG).encode(),
    b"500 Command line too long": str(codes.COMMAND_TOO_LONG).encode(),
}


_DATA_REFUSALS = {
    DataOutcome.LINE_TOO_LONG: codes.LINE_TOO_LONG,
    DataOutcome.TOO_BIG: codes.MESSAGE_TOO_BIG,
    DataOutcome.NO_BUDGET: codes.INSUFFICIENT_STORAGE,
}

# At shutdown, how long closed sessions get to RSET (or close) their upstream
# transaction before the pool is closed under them.
_CLEANUP_SECONDS = 5.0

# The metric's stages: EHLO and HELO both greet.
_STAGE_OF = {"EHLO": "helo", "HELO": "helo"}


class GuardSMTP(SMTP):
    """aiosmtpd's SMTP with ccguard's access check, replies, timeouts and cleanup."""

    def __init__(self, handler: SessionHandler, ctx: FrontContext) -> None:
        settings = ctx.settings
        super().__init__(
            handler,
            hostname=settings.hostname,
            ident="ESMTP ccguard",
            data_size_limit=settings.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            timeout=settings.idle_timeout,
            loop=asyncio.get_running_loop(),
        )
        self._ctx = ctx
        self._guard = handler
        self.stage = "connect"
        # The command the client had got to when it hung up without QUIT, if it did.
        self.hung_up_at: str | None = None
        self._closing_ours = False  # ccguard closes (timeout, shutdown, refusal)
        self._serving = False
        self._smtp_methods = {
            name: self._staged(_STAGE_OF.get(name, name.lower()), method)
            for name, method in self._smtp_methods.items()
        }

    def _staged(self, stage: str, method: Callable[[str], Any]) -> Callable[[str], Any]:
        async def run(arg: str) -> Any:
            self.stage = stage
            return await method(arg)

        return run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first and self.session is not None:
            self._guard.connected(self, self.session.peer)

    def connection_lost(self, error: Exception | None) -> None:
        self._client_left()
        self._guard.disconnected(serving=self._serving)
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        self._client_left()
        return super().eof_received()

    def _client_left(self) -> None:
        if self.hung_up_at is None and not self._closing_ours and self.stage != "quit":
            self.hung_up_at = self.stage

    async def _handle_client(self) -> None:
        self._serving = True
        try:
            refusal = self._guard.refusal_at_connect()
            if refusal is not None:
                self._closing_ours = True
                await self.push(str(refusal))
                self._writer.close()
                return
            await super()._handle_client()
        except ConnectionError:
            # The client reset the connection while a reply was being written:
            # a normal hang-up (counted and logged by session_over), no traceback.
            pass
        finally:
            self._serving = False
            await self._guard.session_over(self.hung_up_at)

    async def smtp_DATA(self, arg: str) -> None:
        if arg or self.envelope is None or not self.envelope.rcpt_tos:
            await super().smtp_DATA(arg)  # a syntax error or 503: the transaction goes on
            return
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        try:
            await self._receive_message()
        finally:
            # No DATA hook runs for an oversized message, an over-long line or
            # one over the in-flight budget: the upstream transaction must not stay open.
            # (After a hang-up, session_over ends it and says so.)
            if self.hung_up_at is None:
                await self._guard.end_transaction()

    async def _receive_message(self) -> None:
        """aiosmtpd's DATA, reading into one buffer (see :mod:`relay.smtp.data`)."""
        assert self.envelope is not None and not self._decode_data
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            result = await read_data(
                self._reader,
                size_limit=self.data_size_limit,
                line_limit=self.line_length_limit,
                fits=self._guard.data_fits,
                refused=self._guard.data_refused,
            )
        except asyncio.CancelledError:
            self._writer.close()  # the connection was reset during DATA
            raise
        refusal = _DATA_REFUSALS.get(result.outcome)
        if refusal is not None:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(str(refusal))
            return
        self.envelope.content = self.envelope.original_content = result.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    async def push(self, status: str | bytes) -> None:
        raw = status.encode("utf-8", "surrogateescape") if isinstance(status, str) else status
        raw = _TRANSLATED.get(raw, raw)
        if len(raw) == 3 or raw[3:4] == b" ":
            self._guard.observe_reply(self.stage, int(raw[:3]))
        await super().push(raw)

    def _timeout_cb(self) -> None:
        self.say_and_close(codes.IDLE_TIMEOUT)

    def say_and_close(self, reply: codes.Reply) -> None:
        """Write ``reply`` and close the connection (timeouts, shutdown)."""
        if self.transport is None or self.transport.is_closing():
            return
        self._closing_ours = True
        with contextlib.suppress(Exception):
            self._writer.write(str(reply).encode() + b"\r\n")
        self.transport.close()


class SmtpListener:
    """The listening socket(s), started with ``loop.create_server`` in the running loop."""

    def __init__(self, ctx: FrontContext) -> None:
        self._ctx = ctx
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        """Bind and start accepting; ``port`` 0 picks a free port (see :attr:`port`)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: GuardSMTP(SessionHandler(self._ctx), self._ctx),
            host=host,
            port=port,
            reuse_address=True,
        )

    @property
    def sockets(self) -> list[socket.socket]:
        return list(self._server.sockets) if self._server is not None else []

    @property
    def port(self) -> int:
        port: int = self.sockets[0].getsockname()[1]
        return port

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def stop(self, grace: float) -> None:
        """Stop accepting, let transactions in flight finish (up to ``grace`` s), close all."""
        if self._server is None:
            return
        self._server.close()
        self._ctx.sessions.closing = True
        self._ctx.sessions.close_idle()
        await self._ctx.sessions.wait_idle(grace)
        await self._ctx.sessions.cancel_messages()
        self._ctx.sessions.close_all()
        await self._ctx.sessions.wait_gone(_CLEANUP_SECONDS)
        await self._server.wait_closed()
        self._server = None
