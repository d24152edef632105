"""A second, recording milter (real milter protocol, kilter.protocol's codec): it
continues everything and keeps the header fields it was shown, as a DKIM signer
listed after ccguard in ``smtpd_milters`` would see them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from kilter.protocol import messages as m
from kilter.protocol.buffer import SimpleBuffer
from kilter.protocol.core import FilterMessage, FilterProtocol

__all__ = ["RecordingMilter"]


@dataclass
class RecordingMilter:
    """Listens on 127.0.0.1 (port 0); ``headers`` holds each message's (name, value)s."""

    headers: list[list[tuple[str, bytes]]] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> RecordingMilter:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        proto, buf, current = FilterProtocol(), SimpleBuffer(1 << 20), list[tuple[str, bytes]]()
        try:
            while data := await reader.read(buf.available):
                buf[:] = data
                for message in proto.read_from(buf):
                    message.freeze()
                    answer = self._answer(proto, message, current)
                    if isinstance(message, m.EndOfMessage):
                        self.headers.append(current)
                        current = []
                    if answer is not None:
                        out = SimpleBuffer(256)
                        proto.write_to(out, answer)
                        writer.write(out[:].tobytes())
                await writer.drain()
        finally:
            writer.close()

    @staticmethod
    def _answer(
        proto: FilterProtocol, message: m.Message, current: list[tuple[str, bytes]]
    ) -> FilterMessage | None:
        if isinstance(message, m.Negotiate):
            return m.Negotiate(6, m.ActionFlags(0), m.ProtocolFlags.HEADER_LEADING_SPACE)
        if isinstance(message, m.Header):
            current.append((message.name, bytes(message.value)))
        if isinstance(message, (m.Macro, m.Abort, m.Close)) or not proto.needs_response(message):  # type: ignore[arg-type]
            return None
        return m.Continue()
