"""The milter listener: ``inet:HOST:PORT`` or ``unix:/PATH`` (with its mode).

Each connection from the MTA gets a :class:`MilterConnection`.  Stopping
closes the listener, lets connections in the middle of a message finish
(bounded by ``grace``) and closes the rest: the MTA then applies its
``milter_default_action`` (tempfail, as documented) to anything unanswered.
A worker of ``[smtp] workers`` serves the socket its supervisor bound
(:meth:`MilterListener.adopt`, :mod:`relay.milter.listen`) and leaves a
``unix`` path to the supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from pathlib import Path
from typing import Any

from relay.milter.connection import MilterConnection
from relay.milter.context import MilterContext
from relay.milter.listen import BoundPath, bind_milter
from relay.settings_milter import MilterListen
from relay.smtp.access import NetworkAccess

__all__ = ["MilterListener"]

#: Python 3.13 removes a unix server's socket when it closes: that one is the supervisor's.
_KEEP_PATH: dict[str, Any] = {"cleanup_socket": False} if sys.version_info >= (3, 13) else {}


class MilterListener:
    """Accepts milter connections and serves each one."""

    def __init__(self, ctx: MilterContext) -> None:
        #: What each connection is served with (replaceable before :meth:`start`).
        self.ctx = ctx
        self._servers: list[asyncio.Server] = []
        self._tasks: dict[asyncio.Task[None], MilterConnection] = {}
        self._peers = NetworkAccess(ctx.settings.allowed_peers)
        self.address: MilterListen | None = None
        #: The ``unix`` socket :meth:`drain` removes (not one a supervisor bound).
        self._bound: BoundPath | None = None

    async def start(self, address: MilterListen | None) -> None:
        """Bind and accept; an ``inet`` port 0 picks a free port (see :attr:`listen`).
        ``None`` (``[milter] listen`` empty): nothing to start."""
        if address is None:
            return
        self.address = address
        if address.is_unix:  # bound as the supervisor binds it: the mode set before listen()
            sock = bind_milter(address, self.ctx.settings.mode)[0]
            sock.set_inheritable(False)
            self._bound = BoundPath(Path(address.path))
            server = await asyncio.start_unix_server(self._serve, sock=sock)
            self._servers.append(server)
        else:
            server = await asyncio.start_server(self._serve, address.host, address.port)
            self._servers.append(server)
        self.ctx.log.info("milter listening", listen=self.listen)

    async def adopt(self, address: MilterListen, sockets: list[socket.socket]) -> None:
        """Accept from the listening ``sockets`` the supervisor of ``[smtp] workers``
        bound for ``address`` (it set a ``unix`` socket's mode and removes it)."""
        self.address = address
        for sock in sockets:
            if address.is_unix:
                server = await asyncio.start_unix_server(self._serve, sock=sock, **_KEEP_PATH)
            else:
                server = await asyncio.start_server(self._serve, sock=sock)
            self._servers.append(server)
        self.ctx.log.info("milter listening", listen=self.listen, inherited=True)

    @property
    def serving(self) -> bool:
        return bool(self._servers) and all(s.is_serving() for s in self._servers)

    async def check(self) -> tuple[bool, str]:
        """The readiness check: listening, and where."""
        up = self.serving
        return (up, f"listening on {self.listen}" if up else "not listening")

    @property
    def listen(self) -> str:
        """Where it listens, in Postfix's notation (``inet:127.0.0.1:8890``)."""
        if self.address is None or not self._servers:
            return ""
        if self.address.is_unix:
            return f"unix:{self.address.path}"
        host, port = self._servers[0].sockets[0].getsockname()[:2]
        return f"inet:{host}:{port}"

    @property
    def port(self) -> int:
        """The bound TCP port (``inet`` only)."""
        assert self._servers
        port: int = self._servers[0].sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if isinstance(peer, tuple) and not self._peers.allows(peer[0]):
            self.ctx.log.warning("milter_peer_refused", client_ip=peer[0])
            if self.ctx.metrics is not None:
                self.ctx.metrics.milter_error("peer")
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        _no_delay(writer)
        connection = self._tasks[task] = MilterConnection(self.ctx, reader, writer)
        metrics = self.ctx.metrics
        if metrics is not None:
            metrics.milter_connection(1)
        try:
            await connection.run()
        finally:
            self._tasks.pop(task, None)
            if metrics is not None:
                metrics.milter_connection(-1)

    async def stop(self, grace: float) -> None:
        """Stop accepting; give messages being answered ``grace`` seconds, then close
        every connection (idle ones at once)."""
        self.close()
        await self.drain(grace)

    def close(self) -> None:
        """Stop accepting at once and close the idle connections (:meth:`drain` the rest)."""
        if not self._servers:
            return
        for server in self._servers:
            server.close()
        for task, connection in list(self._tasks.items()):
            if not connection.busy:
                task.cancel()

    async def drain(self, grace: float) -> None:
        """Give messages being answered ``grace`` seconds, then close every connection."""
        if not self._servers:
            return
        busy = [t for t, c in self._tasks.items() if c.busy]
        if busy:
            await asyncio.wait(busy, timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers = []
        if self._bound is not None:
            kept = self._bound.remove()
            if kept is not None:
                self.ctx.log.warning("milter socket not removed", error=kept)
            self._bound = None


def _no_delay(writer: asyncio.StreamWriter) -> None:
    """TCP_NODELAY on an inet connection: an answer is one small frame, and Nagle's
    algorithm would hold it back until the MTA acknowledges the last one."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
