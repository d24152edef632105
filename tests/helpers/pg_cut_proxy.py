"""A TCP proxy on 127.0.0.1 in front of a real PostgreSQL that can lose one answer.

Armed with a marker (bytes of an SQL statement, e.g. ``b"INSERT INTO messages"``),
it forwards the next client message containing the marker to the server,
swallows what the server answers to it (the server sends it only once the
statement has run and, in autocommit, committed) and closes that client
connection: the statement took effect, the client never hears so.  This is
what a connection dropped at the wrong moment (a load balancer, a failover,
a network cut) does.  Armed with ``hang=True`` it instead black-holes that
connection from the marked message on, both ways, and keeps it open (a
half-open connection, a dead route): the statement never reaches the server
and the client waits for an answer that never comes.  Every other byte is passed through
unchanged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

__all__ = ["CutProxy"]


@dataclass
class CutProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target_port``."""

    target_port: int
    port: int = 0
    cuts: int = 0  # answers swallowed so far
    _marker: bytes | None = None
    _hang: bool = False
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> CutProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def arm(self, marker: bytes, *, hang: bool = False) -> None:
        """Lose the answer to the next client message containing ``marker``
        (``hang``: and every later byte on that connection, which stays open)."""
        self._marker, self._hang = marker, hang

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        cut = asyncio.Event()  # set: the answer now coming from the server is to be lost
        up = asyncio.create_task(self._upstream(client_r, server_w, cut))
        down = asyncio.create_task(self._downstream(server_r, client_w, cut))
        self._tasks.update((up, down))
        try:
            await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
                self._tasks.discard(task)
            for writer in (client_w, server_w):
                writer.close()

    async def _upstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut: asyncio.Event
    ) -> None:
        while chunk := await reader.read(65536):
            if cut.is_set() and self._hang:
                continue  # black-holed: nothing more reaches the server
            if self._marker is not None and self._marker in chunk:
                self._marker = None
                cut.set()
                if self._hang:
                    self.cuts += 1  # the statement never reaches the server
                    continue
            writer.write(chunk)
            await writer.drain()

    async def _downstream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut: asyncio.Event
    ) -> None:
        while chunk := await reader.read(65536):
            if cut.is_set():
                if self._hang:
                    continue  # silent for good
                self.cuts += 1  # the statement ran; its answer is lost with the connection
                return
            writer.write(chunk)
            await writer.drain()
