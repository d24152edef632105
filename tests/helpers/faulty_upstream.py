"""A misbehaving upstream for the fault tests: a small SMTP server on asyncio, written
for the tests, that does at any stage whatever a broken or slow next hop does.

Stages: ``banner``, ``ehlo``, ``mail``, ``rcpt``, ``data`` (the DATA command),
``mid_data`` (after the first line of the message), ``eod`` (the final dot) and
``rset``.  :attr:`FaultyUpstream.faults` maps a stage to a :class:`Fault`; the
upstream refuses connections altogether while :meth:`FaultyUpstream.refuse` holds.

A message counts as delivered (:attr:`FaultyUpstream.messages`) only when its
end of data was answered 250 to a client that was still there: like a server
that checks its client before committing, it never delivers a message whose
sender had already given up.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.helpers.upstream import Received

__all__ = ["CLOSE", "HANG", "LATE", "RESET", "Fault", "FaultyUpstream", "reply", "slow"]

_OK = {
    "mail": "250 2.1.0 Ok",
    "rcpt": "250 2.1.5 Ok",
    "data": "354 End data with <CR><LF>.<CR><LF>",
    "eod": "250 2.0.0 Ok: queued",
    "rset": "250 2.0.0 Ok",
}
_EHLO = ["250-upstream.test", "250-8BITMIME", "250-SMTPUTF8", "250 SIZE 0"]


@dataclass(frozen=True)
class Fault:
    """What the upstream does at a stage instead of answering it normally.

    ``kind``: ``reply`` (answer ``text`` instead), ``hang`` (never answer),
    ``close`` (FIN), ``reset`` (RST), ``slow`` (answer normally after ``delay``
    seconds) or ``late`` (answer normally, but only once the client has given up
    waiting: it sent something else, or left).  ``nth``: only the n-th time the
    stage comes (counted over all connections), else every time.
    """

    kind: str
    text: str = ""
    delay: float = 0.0
    nth: int | None = None

    def on(self, nth: int) -> Fault:
        """The same fault, the ``nth`` time the stage comes only."""
        return Fault(self.kind, self.text, self.delay, nth)


HANG = Fault("hang")
CLOSE = Fault("close")
RESET = Fault("reset")
LATE = Fault("late")


def reply(text: str) -> Fault:
    """Answer ``text`` (e.g. ``"451 4.3.0 try later"``) instead of the normal reply."""
    return Fault("reply", text)


def slow(delay: float) -> Fault:
    """Answer normally, after ``delay`` seconds."""
    return Fault("slow", delay=delay)


class _Gone(Exception):
    """The connection is over (closed by either side, or hung up on purpose)."""


@dataclass
class FaultyUpstream:
    """The server; :meth:`start` it on 127.0.0.1 (port 0: a free one)."""

    faults: dict[str, Fault] = field(default_factory=dict)
    messages: list[Received] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # verbs, over all connections
    connections: int = 0
    open_connections: int = 0
    port: int = 0
    _seen: dict[str, int] = field(default_factory=dict)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self, port: int = 0) -> FaultyUpstream:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), host="127.0.0.1", port=port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening and end every connection (hung ones included)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @asynccontextmanager
    async def refuse(self) -> AsyncIterator[None]:
        """Nobody listens on :attr:`port` (connections are refused) inside the block."""
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        try:
            yield
        finally:
            await self.start(self.port)

    def fault_at(self, stage: str) -> Fault | None:
        """The fault for this occurrence of ``stage`` (and count the occurrence)."""
        self._seen[stage] = self._seen.get(stage, 0) + 1
        fault = self.faults.get(stage)
        if fault is None or (fault.nth is not None and fault.nth != self._seen[stage]):
            return None
        return fault

    def seen(self, stage: str) -> int:
        """How many times ``stage`` came so far."""
        return self._seen.get(stage, 0)


class _Connection(asyncio.Protocol):
    """One client connection: a line buffer and the SMTP conversation (:meth:`_serve`)."""

    def __init__(self, up: FaultyUpstream) -> None:
        self.up = up
        self.buffer = bytearray()
        self.gone = False
        self._changed = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    # -- protocol -----------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.up.connections += 1
        self.up.open_connections += 1
        task = asyncio.get_running_loop().create_task(self._run())
        self.up._tasks.add(task)
        task.add_done_callback(self.up._tasks.discard)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._changed.set()

    def eof_received(self) -> bool:
        self.gone = True
        self._changed.set()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone = True
        self._changed.set()
        self.up.open_connections -= 1

    # -- reading and writing ------------------------------------------------

    async def _change(self) -> None:
        self._changed.clear()
        await self._changed.wait()

    async def readline(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[: end + 2])
                del self.buffer[: end + 2]
                return line
            if self.gone:
                raise _Gone
            await self._change()

    def send(self, *lines: str) -> None:
        if self.gone or self.transport is None:
            raise _Gone
        self.transport.write("".join(f"{line}\r\n" for line in lines).encode())

    async def _given_up(self) -> None:
        """Wait until the client sent something more, or left."""
        while not self.buffer and not self.gone:
            await self._change()

    def _hang_up(self, *, rst: bool) -> None:
        assert self.transport is not None
        if rst:
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
        else:
            self.transport.close()
        self.gone = True
        raise _Gone

    async def stage(self, name: str, *normal: str) -> bool:
        """Answer ``name`` with ``normal`` or its fault; False if the fault was a reply."""
        fault = self.up.fault_at(name)
        if fault is not None:
            if fault.kind == "reply":
                self.send(fault.text)
                return False
            if fault.kind == "hang":
                while not self.gone:
                    await self._change()
                raise _Gone
            if fault.kind in ("close", "reset"):
                self._hang_up(rst=fault.kind == "reset")
            if fault.kind == "slow":
                await asyncio.sleep(fault.delay)
            if fault.kind == "late":
                await self._given_up()
        if normal:
            self.send(*normal)
        return True

    # -- the conversation ---------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._serve()
        except _Gone:
            pass
        finally:
            if self.transport is not None and not self.transport.is_closing():
                self.transport.close()

    async def _serve(self) -> None:
        if not await self.stage("banner", "220 upstream.test ESMTP faulty"):
            return
        envelope: Received | None = None
        while True:
            line = (await self.readline()).decode("utf-8", "surrogateescape").rstrip("\r\n")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            self.up.commands.append(verb)
            if verb in ("EHLO", "HELO"):
                await self.stage("ehlo", *(_EHLO if verb == "EHLO" else _EHLO[-1:]))
            elif verb == "MAIL":
                if await self.stage("mail", _OK["mail"]):
                    sender, _, params = arg[5:].strip().partition(" ")
                    envelope = Received(sender.strip("<>"), [], params.split(), b"")
            elif verb == "RCPT":
                if await self.stage("rcpt", _OK["rcpt"]) and envelope is not None:
                    envelope.rcpt_tos.append(arg[3:].strip().strip("<>"))
            elif verb == "DATA":
                if envelope is not None and await self.stage("data", _OK["data"]):
                    await self._data(envelope)
                envelope = None
            elif verb == "RSET":
                envelope = None
                await self.stage("rset", _OK["rset"])
            elif verb == "NOOP":
                self.send("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye")
                return
            else:
                self.send("502 5.5.2 Error: command not recognized")

    async def _data(self, envelope: Received) -> None:
        lines: list[bytes] = []
        while (line := await self.readline()) != b".\r\n":
            if not lines:
                await self.stage("mid_data")
            lines.append(line[1:] if line.startswith(b".") else line)
        envelope.data = b"".join(lines)
        if await self.stage("eod") and not self.gone:
            # A late answer comes only after the client gave up: it is still
            # committed (and said) if the client is still there to hear it.
            self.up.messages.append(envelope)
            self.send(_OK["eod"])
