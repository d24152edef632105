"""``[smtp] workers``: one listening socket for every worker, sessions placed by load.

The supervisor binds the SMTP sockets (:func:`bind_listeners`) and every
worker inherits them.  With SO_REUSEPORT the kernel hashed each connection to
a worker by its address and port, so 20 long-lived sessions landed 7 and 13,
or 8 and 12, and the busier worker capped the whole set (docs/throughput.md).
Here every worker sees every new connection, and a worker that has more
sessions open than another one waits a moment (``_DEFER``) before it takes it,
so the other takes it first; if nobody did within ``_MAX_WAIT`` (that worker
is busy, hung or gone) it takes it anyway.  The counts are in a small shared
file (:class:`SessionBoard`), one slot per worker, each written only by its
own worker.  A worker that stops leaves waiting connections in the one queue
for the others, instead of the kernel resetting them as with SO_REUSEPORT.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import select
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GONE", "Inherited", "SessionBoard", "SharedAcceptor", "bind_listeners"]

_SLOT = struct.Struct("<q")
_DEFER = 0.002  # seconds between looks while another worker has fewer sessions
_MAX_WAIT = 0.02  # then take the connection anyway
_NEW_WAIT = 0.1  # a wait that began longer ago than this was for an earlier connection
_RETRY = 1.0  # out of file descriptors or buffers: as asyncio, try again after a second
#: A slot's count when its worker accepts nothing (stopped, dead): nobody waits for it.
GONE = 2**62


def bind_listeners(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Listening sockets on every address ``host`` resolves to, for workers to inherit."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    addresses = list(dict.fromkeys((info[0], info[4]) for info in infos))
    bound: list[socket.socket] = []
    try:
        for family, address in addresses:
            bound.append(socket.create_server(address, family=family, backlog=backlog))
    except OSError:
        for sock in bound:
            sock.close()
        raise
    for sock in bound:
        sock.set_inheritable(True)
    return bound


class SessionBoard:
    """How many sessions each worker has open, in a file every worker maps."""

    def __init__(self, path: Path, workers: int, index: int) -> None:
        self._workers, self._index = workers, index
        with path.open("r+b") as f:
            self._map = mmap.mmap(f.fileno(), workers * _SLOT.size)

    @staticmethod
    def create(path: Path, workers: int) -> None:
        """The file, every slot :data:`GONE` until its worker starts accepting
        (by the supervisor, before it starts a worker)."""
        path.write_bytes(_SLOT.pack(GONE) * workers)

    def publish(self, sessions: int) -> None:
        """Set this worker's count."""
        _SLOT.pack_into(self._map, self._index * _SLOT.size, sessions)

    def fewest_elsewhere(self) -> int | None:
        """The smallest count of the other workers (None: there are none)."""
        counts = [
            _SLOT.unpack_from(self._map, i * _SLOT.size)[0]
            for i in range(self._workers)
            if i != self._index
        ]
        return min(counts) if counts else None

    def close(self) -> None:
        """Unmap the file (the count stays as last published)."""
        self._map.close()


class SharedAcceptor:
    """Accepts from an inherited listening socket, one connection per look."""

    def __init__(
        self,
        sock: socket.socket,
        factory: Callable[[], asyncio.Protocol],
        *,
        tls: ssl.SSLContext | None,
        board: SessionBoard | None,
        sessions: Callable[[], int],
        overdue: Callable[[], None] | None = None,
    ) -> None:
        self.sock = sock
        self._factory, self._tls, self._board, self._sessions = factory, tls, board, sessions
        self._overdue = overdue
        self._loop = asyncio.get_running_loop()
        self._connecting: set[asyncio.Task[Any]] = set()
        self._waiting_since: float | None = None
        self._later: asyncio.TimerHandle | None = None
        self.serving = False

    def start(self) -> None:
        """Start looking for connections."""
        self.sock.setblocking(False)
        self.serving = True
        if self._board is not None:
            self._board.publish(self._sessions())
        self._loop.add_reader(self.sock.fileno(), self._ready)

    def close(self) -> None:
        """Stop accepting; this worker's copy of the socket is closed, the others keep theirs."""
        if not self.serving:
            return
        self.serving = False
        if self._later is not None:
            self._later.cancel()
        if self._board is not None:
            self._board.publish(GONE)  # else the others wait for us on every connection
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()

    def _pause(self, seconds: float) -> None:
        self._loop.remove_reader(self.sock.fileno())
        self._later = self._loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        self._later = None
        if not self.serving:
            return
        if not self._readable():
            # Another worker took what we waited for: the next connection gets a full wait.
            self._waiting_since = None
        self._loop.add_reader(self.sock.fileno(), self._ready)

    def _readable(self) -> bool:
        """Whether a connection waits in the queue now (poll: no FD_SETSIZE limit)."""
        poller = select.poll()
        poller.register(self.sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def _should_wait(self) -> bool:
        if self._board is None:
            return False
        mine = self._sessions() + len(self._connecting)
        self._board.publish(mine)
        fewest = self._board.fewest_elsewhere()
        if fewest is None or mine <= fewest:
            self._waiting_since = None
            return False
        now = time.monotonic()
        if self._waiting_since is None or now - self._waiting_since > _NEW_WAIT:
            self._waiting_since = now  # a connection we have not waited for yet
        return now - self._waiting_since < _MAX_WAIT

    def _ready(self) -> None:
        if self._should_wait():
            self._pause(_DEFER)
            return
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up already
        except OSError:  # EMFILE, ENFILE, ENOBUFS, ENOMEM
            self._pause(_RETRY)
            return
        if self._waiting_since is not None and self._overdue is not None:
            self._overdue()  # a worker with fewer sessions let it wait the whole bound
        self._waiting_since = None
        task = self._loop.create_task(self._connect(conn))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        try:
            await self._loop.connect_accepted_socket(self._factory, conn, ssl=self._tls)
        except Exception:  # a failed TLS handshake: asyncio's server drops it quietly too
            with contextlib.suppress(OSError):
                conn.close()


@dataclass(frozen=True, slots=True)
class Inherited:
    """What a worker got from its supervisor: the SMTP sockets and the session board."""

    smtp: list[socket.socket]
    tls: list[socket.socket]
    board: SessionBoard | None
