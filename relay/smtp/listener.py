"""The listening socket(s) of one front: asyncio's server, or our own accept loop."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable

from aiosmtpd.proxy_protocol import ProxyData

from relay.smtp.context import FrontContext
from relay.smtp.proxy_first import ProxyFirst
from relay.smtp.server import GuardSMTP
from relay.smtp.session import SessionHandler
from relay.smtp.shared_listen import HandshakeGate, SessionBoard, SharedAcceptor, bind_listeners
from relay.smtp.tls import handshake_failure

__all__ = ["SmtpListener"]

# At shutdown, how long closed sessions get to RSET (or close) their upstream
# transaction before the pool is closed under them.
_CLEANUP_SECONDS = 5.0


class SmtpListener:
    """The listening socket(s), started with ``loop.create_server`` in the running loop."""

    def __init__(self, ctx: FrontContext, *, implicit_tls: bool = False) -> None:
        self._ctx = ctx
        self._implicit_tls = implicit_tls
        self._server: asyncio.Server | None = None
        self._shared: list[SharedAcceptor] = []

    async def start(self, host: str, port: int) -> None:
        """Bind and start accepting; ``port`` 0 picks a free port (see :attr:`port`).

        With ``implicit_tls`` every connection starts with a TLS handshake (RFC 8314),
        run by our own accept loop (as with ``[smtp] workers``): asyncio's server
        drops a failed handshake without a word, ours logs and counts it.
        """
        if self._implicit_tls:
            sockets = bind_listeners(host, port, self._ctx.settings.backlog)
            for sock in sockets:
                sock.set_inheritable(False)
            self.adopt(sockets, None)
            return
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
        gate, metrics = self._ctx.proxy, self._ctx.metrics
        first = ProxyFirst(self._ctx, gate, self._proxied) if gate and self._implicit_tls else None
        handshakes = HandshakeGate(self._admit_handshake, self._ctx.settings.tls_handshake_timeout)
        for sock in sockets:
            acceptor = SharedAcceptor(
                sock, self._session, tls=self._tls(), board=board, sessions=self._count,
                overdue=metrics.accept_overdue if metrics is not None else None,
                failed=self._handshake_failed, preface=first, handshakes=handshakes,
            )  # fmt: skip
            acceptor.start()
            self._shared.append(acceptor)

    def _admit_handshake(self, ip: str) -> Callable[[], None] | None:
        """A TLS handshake from ``ip`` may start unless the handshakes in progress from
        it, or in all, are at ``[limits]`` (a trusted load balancer: the total only)."""
        limits = self._ctx.handshakes
        key = None if self._ctx.proxy is not None and self._ctx.proxy.trusts(ip) else ip
        over = limits.admit(key)
        if over is not None:
            reason = over[1]
            self._ctx.door.warning("client refused", reason, client_ip=ip, stage="tls")
            self._ctx.refused(reason)
            return None
        return lambda: limits.release(key)

    def _handshake_failed(self, client_ip: str, error: BaseException) -> None:
        # Info, not warning: scanners and TCP health checks on port 465 do this all day.
        reason, detail = handshake_failure(error)
        self._ctx.door.info(
            "tls handshake failed", reason, kind="implicit", client_ip=client_ip, detail=detail
        )
        if self._ctx.metrics is not None:
            self._ctx.metrics.smtp_tls_failed(reason, "implicit")

    def _session(self) -> GuardSMTP:
        return GuardSMTP(SessionHandler(self._ctx), self._ctx, implicit_tls=self._implicit_tls)

    def _proxied(self, data: ProxyData) -> GuardSMTP:
        handler = SessionHandler(self._ctx)
        return GuardSMTP(handler, self._ctx, implicit_tls=True, proxy_data=data)

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
        self.close()
        await self.drain(grace)

    def close(self) -> None:
        """Stop accepting at once; sessions that start after this are told 421.

        :meth:`drain` then finishes the sessions.  The application closes every
        front first and drains them together, so no front accepts while another
        one drains.
        """
        if self._server is None and not self._shared:
            return
        for acceptor in self._shared:
            acceptor.close()
        if self._server is not None:
            self._server.close()
        self._ctx.sessions.closing = True

    async def drain(self, grace: float) -> None:
        """Say 421 to idle sessions, let transactions in flight finish (up to ``grace``
        seconds), then close every session.  The listeners of one front share its
        sessions: draining both at once waits once."""
        if self._server is None and not self._shared:
            return
        sessions = self._ctx.sessions
        sessions.close_idle()
        await sessions.wait_idle(grace)
        await sessions.cancel_messages()
        sessions.close_all()
        await sessions.wait_gone(_CLEANUP_SECONDS)
        if self._server is not None:
            await self._server.wait_closed()
        self._server = None
