"""The milter listener: ``inet:HOST:PORT`` or ``unix:/PATH`` (with its mode).

Each connection from the MTA gets a :class:`MilterConnection`.  Stopping
closes the listener, lets connections in the middle of a message finish
(bounded by ``grace``) and closes the rest: the MTA then applies its
``milter_default_action`` (tempfail, as documented) to anything unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
from pathlib import Path

from relay.milter.connection import MilterConnection
from relay.milter.context import MilterContext
from relay.settings_milter import MilterListen
from relay.smtp.access import NetworkAccess

__all__ = ["MilterListener"]


class MilterListener:
    """Accepts milter connections and serves each one."""

    def __init__(self, ctx: MilterContext) -> None:
        #: What each connection is served with (replaceable before :meth:`start`).
        self.ctx = ctx
        self._server: asyncio.Server | None = None
        self._tasks: dict[asyncio.Task[None], MilterConnection] = {}
        self._peers = NetworkAccess(ctx.settings.allowed_peers)
        self.address: MilterListen | None = None

    async def start(self, address: MilterListen | None) -> None:
        """Bind and accept; an ``inet`` port 0 picks a free port (see :attr:`listen`).
        ``None`` (``[milter] listen`` empty): nothing to start."""
        if address is None:
            return
        self.address = address
        if address.is_unix:
            path = Path(address.path)
            _remove_stale_socket(path)
            self._server = await asyncio.start_unix_server(self._serve, path=str(path))
            path.chmod(self.ctx.settings.mode)
        else:
            self._server = await asyncio.start_server(self._serve, address.host, address.port)
        self.ctx.log.info("milter listening", listen=self.listen)

    @property
    def serving(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def check(self) -> tuple[bool, str]:
        """The readiness check: listening, and where."""
        up = self.serving
        return (up, f"listening on {self.listen}" if up else "not listening")

    @property
    def listen(self) -> str:
        """Where it listens, in Postfix's notation (``inet:127.0.0.1:8890``)."""
        if self.address is None or self._server is None:
            return ""
        if self.address.is_unix:
            return f"unix:{self.address.path}"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"inet:{host}:{port}"

    @property
    def port(self) -> int:
        """The bound TCP port (``inet`` only)."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
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
        if self._server is None:
            return
        self._server.close()
        for task, connection in list(self._tasks.items()):
            if not connection.busy:
                task.cancel()
        busy = [t for t, c in self._tasks.items() if c.busy]
        if busy:
            await asyncio.wait(busy, timeout=grace)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await self._server.wait_closed()
        self._server = None
        if self.address is not None and self.address.is_unix:
            _remove_stale_socket(Path(self.address.path))


def _no_delay(writer: asyncio.StreamWriter) -> None:
    """TCP_NODELAY on an inet connection: an answer is one small frame, and Nagle's
    algorithm would hold it back until the MTA acknowledges the last one."""
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket left by an earlier run (never a file that is not a socket)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(mode):
        path.unlink()
    else:
        raise OSError(f"{path} exists and is not a socket; not replacing it")
