"""The aiosmtpd protocol subclass and the listener that runs it in our own loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import warnings
from collections.abc import Callable
from typing import Any

from aiosmtpd.proxy_protocol import ProxyData
from aiosmtpd.smtp import TLSSetupException

from relay import codes
from relay.codes import Reply
from relay.smtp.auth import capture_credentials, session_user
from relay.smtp.context import FrontContext
from relay.smtp.proxy import ProxyGate
from relay.smtp.server_commands import CommandOverrides
from relay.smtp.session import SessionHandler
from relay.smtp.shared_listen import SessionBoard, SharedAcceptor
from relay.smtp.tls import TlsInfo, handshake_failure, tls_info

__all__ = ["GuardSMTP", "SmtpListener"]

# aiosmtpd's own replies, given the enhanced status codes and wording ccguard uses.
_TRANSLATED = {
    b"552 Error: Too much mail data": str(codes.MESSAGE_TOO_BIG).encode(),
    b"552 Error: message size exceeds fixed maximum message size": str(
        codes.MESSAGE_TOO_BIG
    ).encode(),
    b"500 Line too long (see RFC5321 4.5.3.1.6)": str(codes.LINE_TOO_LONG).encode(),
    b"500 Command line too long": str(codes.COMMAND_TOO_LONG).encode(),
    b"530 Must issue a STARTTLS command first": str(codes.STARTTLS_FIRST).encode(),
}
# What aiosmtpd's EHLO says when no AUTH mechanism is left (AUTH not configured).
_EMPTY_AUTH_LINE = b"250-AUTH "
_MECHANISMS = ("LOGIN", "PLAIN")


# At shutdown, how long closed sessions get to RSET (or close) their upstream
# transaction before the pool is closed under them.
_CLEANUP_SECONDS = 5.0

# The metric's stages: EHLO and HELO both greet.
_STAGE_OF = {"EHLO": "helo", "HELO": "helo"}


class GuardSMTP(CommandOverrides):
    """aiosmtpd's SMTP with ccguard's access check, replies, timeouts and cleanup."""

    def __init__(
        self, handler: SessionHandler, ctx: FrontContext, *, implicit_tls: bool = False
    ) -> None:
        settings = ctx.settings
        starttls = ctx.tls is not None and settings.starttls != "off" and not implicit_tls
        with warnings.catch_warnings():
            # aiosmtpd warns when AUTH is required without auth_require_tls; on the
            # implicit-TLS listener the whole connection is encrypted, and
            # allow_plaintext is warned about once at start.
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(
                handler,
                hostname=settings.hostname,
                ident="ESMTP ccguard",
                data_size_limit=settings.max_message_size,
                enable_SMTPUTF8=True,
                decode_data=False,
                timeout=settings.idle_timeout,
                tls_context=ctx.tls.current if starttls and ctx.tls else None,
                require_starttls=starttls and settings.starttls == "required",
                authenticator=capture_credentials if ctx.auth else None,
                auth_required=settings.auth.required,
                auth_require_tls=not (implicit_tls or settings.auth.allow_plaintext),
                auth_exclude_mechanism=() if ctx.auth else _MECHANISMS,
                proxy_protocol_timeout=(settings.proxy_timeout if ctx.proxy is not None else None),
                loop=asyncio.get_running_loop(),
            )
        self._ctx = ctx
        self.implicit_tls = implicit_tls
        self._guard = handler
        self.stage = "connect"
        # The command the client had got to when it hung up without QUIT, if it did.
        self.hung_up_at: str | None = None
        self._closing_ours = False  # ccguard closes (timeout, shutdown, refusal)
        self._serving = False
        self._slot_ip: str | None = None  # counted in ctx.connections while set
        self._proxy_seen = False
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
        if (not first or self.implicit_tls) and self._ctx.metrics is not None:
            info = self.tls  # the STARTTLS handshake (or the implicit one) completed
            self._ctx.metrics.smtp_tls_session(info.version if info else "unknown")

    @property
    def tls(self) -> TlsInfo | None:
        """The TLS protocol and cipher of this connection, ``None`` while in clear."""
        return tls_info(self.transport)

    @property
    def authenticated_user(self) -> str | None:
        """The user this session authenticated as, if any."""
        return session_user(self.session)

    def connection_lost(self, error: Exception | None) -> None:
        if self._slot_ip is not None:
            self._ctx.connections.release(self._slot_ip)
            self._slot_ip = None
        self._client_left()
        self._guard.disconnected(serving=self._serving)
        super().connection_lost(error)
        self._consume_close_error()

    def _consume_close_error(self) -> None:
        # A reset leaves its error in the stream protocol's close future, which
        # no server code awaits.  The protocol's __del__ would mark it seen, but
        # gc may finalise the future first (they form a cycle through the
        # traceback) and asyncio then logs "Future exception was never retrieved".
        closed: asyncio.Future[None] | None = getattr(self, "_closed", None)
        if closed is not None and closed.done() and not closed.cancelled():
            closed.exception()

    def eof_received(self) -> bool | None:
        self._client_left()
        return super().eof_received()

    def _client_left(self) -> None:
        if self.hung_up_at is None and not self._closing_ours and self.stage != "quit":
            self.hung_up_at = self.stage

    async def _handle_client(self) -> None:
        self._serving = True
        try:
            await self._admit_and_serve()
        except ConnectionError:
            # The client reset the connection while a reply was being written:
            # a normal hang-up (counted and logged by session_over), no traceback.
            pass
        finally:
            self._serving = False
            await self._guard.session_over(self.hung_up_at)

    async def _admit_and_serve(self) -> None:
        if self._ctx.proxy is None:
            if await self._admit():
                await super()._handle_client()
            else:
                self._writer.close()
            return
        if not self._ctx.proxy.trusts(self._guard.client_ip):
            self._proxy_failed("untrusted_peer")
            self._writer.close()
            return
        self.stage = "proxy"
        # aiosmtpd reads the header, then calls handle_PROXY -> admit_proxied.
        await super()._handle_client()
        if not self._proxy_seen:
            self._proxy_failed("invalid")

    async def admit_proxied(self, data: ProxyData) -> bool:
        """A trusted proxy's valid header arrived: admit the client it names, or refuse it."""
        self._proxy_seen = True
        self._reset_timeout()
        ip = ProxyGate.client_ip(data, self._guard.client_ip)
        if ip is None:
            self._proxy_failed("no_address")
            return False
        self._guard.client_ip = ip
        self._guard.health_check = ProxyGate.speaks_for_itself(data)
        self.stage = "connect"
        return await self._admit(trusted_proxy=self._guard.health_check)

    async def _admit(self, *, trusted_proxy: bool = False) -> bool:
        """Apply the checks before the greeting; False after a refusal was written."""
        refusal = self._guard.refusal_at_connect(trusted_proxy=trusted_proxy)
        if refusal is None:
            refusal = self._claim_slot()
        if refusal is None:
            refusal = await self._early_talker()
        if refusal is None:
            return True
        self._closing_ours = True
        await self.push(str(refusal))
        return False

    def _claim_slot(self) -> Reply | None:
        ip = self._guard.client_ip
        over = self._ctx.connections.admit(ip)
        if over is None:
            self._slot_ip = ip
            return None
        reply, reason = over
        self._ctx.log.warning("client refused", client_ip=ip, reason=reason)
        self._ctx.refused(reason)
        return reply

    async def _early_talker(self) -> Reply | None:
        # Postfix postscreen's pregreet test: a first greeting line, then silence.
        # A real SMTP client waits for the last line; spam engines talk at once.
        wait = self._ctx.limits.pregreet_wait
        if wait <= 0:
            return None
        await self.push(f"220-{self.hostname} {self.__ident__}")
        try:
            await asyncio.wait_for(self._reader.read(1), wait)
        except TimeoutError:
            return None
        self._ctx.log.warning(
            "client refused", client_ip=self._guard.client_ip, reason="early_talker"
        )
        self._ctx.refused("early_talker")
        return codes.EARLY_TALKER

    def _proxy_failed(self, reason: str) -> None:
        self._closing_ours = True  # ccguard closes: not a client hang-up
        peer = self.session.peer if self.session is not None else None
        peer_ip = str(peer[0]) if isinstance(peer, tuple) else ""
        self._ctx.log.warning("proxy header refused", peer_ip=peer_ip, reason=reason)
        if self._ctx.metrics is not None:
            self._ctx.metrics.proxy_header_failure(reason)
        self._ctx.refused("proxy")

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            self._tls_failed(error)
            return ""  # aiosmtpd closes the connection unanswered: no reply is written
        if isinstance(error, asyncio.IncompleteReadError | ConnectionError) and (
            self.hung_up_at is not None or self._closing_ours
        ):
            # The client is gone, but the cancellation aiosmtpd gave the session
            # when it went was lost (asyncio.wait_for in aiosmtplib, Python 3.11,
            # returned the upstream's reply instead): deliver it again, so the
            # hang-up ends the session like any other (session_over logs it).
            self._writer.close()
            raise asyncio.CancelledError
        return await super().handle_exception(error)

    def _tls_failed(self, error: TLSSetupException) -> None:
        reason, detail = handshake_failure(error)
        guard = self._guard
        self._ctx.log.warning(
            "tls handshake failed",
            client_ip=guard.client_ip,
            **({"queue_id": guard.queue_id} if guard.in_transaction else {}),
            reason=reason,
            detail=detail,
        )
        if self._ctx.metrics is not None:
            self._ctx.metrics.smtp_tls_failed(reason)

    async def push(self, status: str | bytes | None) -> None:
        if status is None:  # handle_exception re-raised a lost cancellation: nothing to say
            return
        raw = status.encode("utf-8", "surrogateescape") if isinstance(status, str) else status
        raw = _TRANSLATED.get(raw, raw)
        if raw == _EMPTY_AUTH_LINE:
            return
        if len(raw) == 3 or raw[3:4] == b" ":
            self._guard.observe_reply(self.stage, int(raw[:3]))
        await super().push(raw)

    def _timeout_cb(self) -> None:
        if self.stage == "proxy":  # the load balancer sent no header: nothing to say
            self._proxy_seen = True
            self._proxy_failed("timeout")
            if self.transport is not None:
                self.transport.close()
            return
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

    def __init__(self, ctx: FrontContext, *, implicit_tls: bool = False) -> None:
        self._ctx = ctx
        self._implicit_tls = implicit_tls
        self._server: asyncio.Server | None = None
        self._shared: list[SharedAcceptor] = []

    async def start(self, host: str, port: int) -> None:
        """Bind and start accepting; ``port`` 0 picks a free port (see :attr:`port`).

        With ``implicit_tls`` every connection starts with a TLS handshake (RFC 8314).
        """
        self._server = await asyncio.get_running_loop().create_server(
            self._session,
            host=host,
            port=port,
            reuse_address=True,
            ssl=self._tls(),
            backlog=self._ctx.settings.backlog,
        )

    def adopt(self, sockets: list[socket.socket], board: SessionBoard | None) -> None:
        """Accept from listening sockets the supervisor of ``[smtp] workers`` bound,
        placing sessions by load across the workers (:mod:`relay.smtp.shared_listen`)."""
        for sock in sockets:
            metrics = self._ctx.metrics
            acceptor = SharedAcceptor(
                sock, self._session, tls=self._tls(), board=board, sessions=self._count,
                overdue=metrics.accept_overdue if metrics is not None else None,
            )  # fmt: skip
            acceptor.start()
            self._shared.append(acceptor)

    def _session(self) -> GuardSMTP:
        return GuardSMTP(SessionHandler(self._ctx), self._ctx, implicit_tls=self._implicit_tls)

    def _count(self) -> int:
        return len(self._ctx.sessions)

    def _tls(self) -> ssl.SSLContext | None:
        if not self._implicit_tls:
            return None
        assert self._ctx.tls is not None, "implicit TLS needs [smtp] tls_cert"
        return self._ctx.tls.listener_context()

    @property
    def sockets(self) -> list[socket.socket]:
        if self._shared:
            return [a.sock for a in self._shared]
        return list(self._server.sockets) if self._server is not None else []

    @property
    def port(self) -> int:
        port: int = self.sockets[0].getsockname()[1]
        return port

    @property
    def serving(self) -> bool:
        if self._shared:
            return any(a.serving for a in self._shared)
        return self._server is not None and self._server.is_serving()

    async def stop(self, grace: float) -> None:
        """Stop accepting, let transactions in flight finish (up to ``grace`` s), close all."""
        if self._server is None and not self._shared:
            return
        for acceptor in self._shared:
            acceptor.close()
        if self._server is not None:
            self._server.close()
        self._ctx.sessions.closing = True
        self._ctx.sessions.close_idle()
        await self._ctx.sessions.wait_idle(grace)
        await self._ctx.sessions.cancel_messages()
        self._ctx.sessions.close_all()
        await self._ctx.sessions.wait_gone(_CLEANUP_SECONDS)
        if self._server is not None:
            await self._server.wait_closed()
        self._server = None
