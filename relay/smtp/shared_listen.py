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

A single process runs its implicit-TLS listener with a :class:`SharedAcceptor`
too (no board): unlike asyncio's server, it sees a failed handshake and reports it,
and it can read what comes in clear before the handshake (a :data:`Preface`: the
PROXY header, :mod:`relay.smtp.proxy_first`).
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay.smtp.tls import handshake_failure

__all__ = [
    "GONE", "HandshakeGate", "Inherited", "Opened", "Preface", "SessionBoard",
    "SharedAcceptor", "bind_listeners",
]  # fmt: skip

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


@dataclass(frozen=True, slots=True)
class Opened:
    """How to open one accepted connection, as its :data:`Preface` decided."""

    factory: Callable[[], asyncio.Protocol]
    #: A load balancer's health check: leaving before the TLS handshake is no failure.
    health_check: bool = False
    #: The client a failed handshake is logged for (a PROXY header's), else the peer.
    client_ip: str | None = None


#: Reads from an accepted socket ``(conn, peer_ip)`` before the TLS handshake;
#: ``None``: the connection is refused (logged by the preface), closed unanswered.
Preface = Callable[[socket.socket, str], Awaitable[Opened | None]]


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
        failed: Callable[[str, BaseException], None] | None = None,
        preface: Preface | None = None,
        handshakes: HandshakeGate | None = None,
    ) -> None:
        self.sock = sock
        self._factory, self._tls, self._board, self._sessions = factory, tls, board, sessions
        self._overdue, self._failed, self._preface = overdue, failed, preface
        self._handshakes = handshakes if tls is not None else None
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
        """Stop accepting; this worker's copy of the socket is closed, the others keep theirs.

        Connections still in their TLS handshake are dropped: they are not sessions yet.
        """
        if not self.serving:
            return
        self.serving = False
        if self._later is not None:
            self._later.cancel()
        if self._board is not None:
            self._board.publish(GONE)  # else the others wait for us on every connection
        self._loop.remove_reader(self.sock.fileno())
        self.sock.close()
        if self._tls is not None:  # a plain connection is a session a moment later: it gets 421
            for task in self._connecting:
                task.cancel()

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
            conn, address = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up already
        except OSError:  # EMFILE, ENFILE, ENOBUFS, ENOMEM
            self._pause(_RETRY)
            return
        if self._waiting_since is not None and self._overdue is not None:
            self._overdue()  # a worker with fewer sessions let it wait the whole bound
        self._waiting_since = None
        task = self._loop.create_task(self._connect(conn, _peer_ip(address)))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: socket.socket, peer_ip: str) -> None:
        conn.setblocking(False)
        gate = self._handshakes
        release = gate.admit(peer_ip) if gate is not None else _nothing
        if release is None:  # over the limits: closed before any PROXY or TLS work
            with contextlib.suppress(OSError):
                conn.close()
            return
        slot = [release]  # the slot held now: the peer's, then the client's it speaks for
        try:
            opened = await self._open(conn, peer_ip)
            if opened is not None and gate is not None and not self._rekey(gate, slot, opened):
                opened = None
                with contextlib.suppress(OSError):
                    conn.close()
            if opened is not None:
                await self._handshake(conn, peer_ip, opened, gate.timeout if gate else None)
        finally:
            slot[0]()

    @staticmethod
    def _rekey(gate: HandshakeGate, slot: list[Callable[[], None]], opened: Opened) -> bool:
        """A load balancer's connection counted in the total only: once its header names
        the client, count it for that client (its per-IP limit); False if over it."""
        if opened.client_ip is None or opened.health_check:
            return True
        slot[0]()
        slot[0] = _nothing
        release = gate.admit(opened.client_ip)
        if release is None:
            return False
        slot[0] = release
        return True

    async def _handshake(
        self, conn: socket.socket, peer_ip: str, opened: Opened, timeout: float | None
    ) -> None:
        try:
            await self._loop.connect_accepted_socket(
                opened.factory, conn, ssl=self._tls, ssl_handshake_timeout=timeout
            )
        except Exception as exc:  # a failed TLS handshake (asyncio's server says nothing)
            with contextlib.suppress(OSError):
                conn.close()
            if self._tls is None or self._failed is None:
                return
            if not (opened.health_check and handshake_failure(exc)[0] == "closed"):
                self._failed(opened.client_ip or peer_ip, exc)

    async def _open(self, conn: socket.socket, peer_ip: str) -> Opened | None:
        if self._preface is None:
            return Opened(self._factory)
        opened: Opened | None = None
        try:
            opened = await self._preface(conn, peer_ip)
        finally:
            if opened is None:  # refused, or cancelled (this worker stops)
                with contextlib.suppress(OSError):
                    conn.close()
        return opened


def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class HandshakeGate:
    """Which TLS handshakes may start, and how long one may take.

    ``admit(ip)`` returns the call that gives the slot back once the handshake is
    over, or ``None`` when ``ip`` is over its limits (it logs and counts that)."""

    admit: Callable[[str], Callable[[], None] | None]
    timeout: float


def _peer_ip(address: Any) -> str:
    """The client's IP address from what ``accept`` returned (asked later, a peer
    that reset the connection at once, as HAProxy's health checks do, has none)."""
    return str(address[0]) if isinstance(address, tuple) else ""


@dataclass(frozen=True, slots=True)
class Inherited:
    """What a worker got from its supervisor: the SMTP sockets, the session board
    and the milter's listening sockets (:mod:`relay.milter.listen`)."""

    smtp: list[socket.socket]
    tls: list[socket.socket]
    board: SessionBoard | None
    milter: list[socket.socket] = field(default_factory=list)
