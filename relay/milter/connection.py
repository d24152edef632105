"""One connection from the MTA: milter frames in, answers and header edits out.

The frames are decoded and checked by ``kilter.protocol`` (a sans-I/O codec and
state machine); this module does the asyncio I/O and maps each event onto a
:class:`MilterTransaction`.  Only end of message needs an answer that thinks:
the message is made (:mod:`relay.milter.message`), decided by the same decider
as the SMTP front and carried out by the same Dispatcher
(:mod:`relay.milter.outcome`).

Every other event is answered ``continue`` at once, or not at all where the MTA
offered "no reply" for it (fewer round trips per message).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

from kilter.protocol import messages as m
from kilter.protocol.buffer import SimpleBuffer
from kilter.protocol.core import FilterMessage, FilterProtocol
from kilter.protocol.exceptions import InsufficientSpace, InvalidMessage, UnexpectedMessage

from relay.errors import MilterProtocolError
from relay.milter.context import MilterContext
from relay.milter.eom import EndOfMessage
from relay.milter.transaction import MilterTransaction

__all__ = ["MAX_FRAME", "MilterConnection", "negotiated"]

#: The largest frame accepted: a header field of Postfix's header_size_limit (100 KiB by
#: default) fits ten times over; body chunks are at most 64 KiB.
MAX_FRAME = 1 << 20
_FIRST_BUFFER = 128 << 10

_ACTIONS = m.ActionFlags.ADD_HEADERS | m.ActionFlags.CHANGE_HEADERS
_WANTED = (
    m.ProtocolFlags.HEADER_LEADING_SPACE
    | m.ProtocolFlags.NO_UNKNOWN
    | m.ProtocolFlags.NR_CONNECT
    | m.ProtocolFlags.NR_HELO
    | m.ProtocolFlags.NR_SENDER
    | m.ProtocolFlags.NR_RECIPIENT
    | m.ProtocolFlags.NR_HEADER
    | m.ProtocolFlags.NR_END_OF_HEADERS
    | m.ProtocolFlags.NR_BODY
)


def negotiated(offer: m.Negotiate) -> m.Negotiate:
    """ccguard's answer to the MTA's offer: header edits; header values with their
    leading blanks (exact bytes); no reply to events answered "continue" anyway."""
    if m.ProtocolFlags.HEADER_LEADING_SPACE not in offer.protocol_flags:
        raise MilterProtocolError("the MTA does not offer SMFIP_HDR_LEADSPC (milter protocol 6)")
    if _ACTIONS & ~offer.action_flags:
        raise MilterProtocolError("the MTA does not offer header changes (SMFIF_CHGHDRS)")
    return m.Negotiate(6, _ACTIONS, _WANTED & offer.protocol_flags)


class MilterConnection:
    """Serves one MTA connection until it closes."""

    def __init__(
        self, ctx: MilterContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._ctx = ctx
        self._reader = reader
        self._writer = writer
        self._proto = FilterProtocol()
        self._buf = SimpleBuffer(_FIRST_BUFFER)
        self._state = MilterTransaction(ctx.max_message_size, ctx.budget)
        #: True while an end of message is being answered (shutdown waits for it).
        self.busy = False

    async def run(self) -> None:
        """Read frames and answer them; returns when the MTA closes or on an error."""
        try:
            while await self._read_more():
                for message in self._proto.read_from(self._buf):
                    if isinstance(message, m.Close):
                        return
                    await self._handle(message)
        except MilterProtocolError as exc:
            self._failed(exc.kind, str(exc))
        except (InvalidMessage, UnexpectedMessage, ValueError, InsufficientSpace) as exc:
            # The codec's texts quote the frame (a header value may hold an address).
            self._failed("protocol", type(exc).__name__)
        except TimeoutError:
            self._failed("idle_timeout", "no command within [milter] idle_timeout")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # a malformed frame the codec asserts on, or a bug
            self._failed("internal", type(exc).__name__)
        finally:
            self._state.reset()  # a message cut off mid-way gives its bytes back
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    def _failed(self, kind: str, reason: str) -> None:
        if self._ctx.metrics is not None:
            self._ctx.metrics.milter_error(kind)
        queue_id = self._state.macros.get("i", "")
        self._ctx.log.warning(
            "milter_connection_failed", kind=kind, error=reason, queue_id=queue_id
        )

    async def _read_more(self) -> bool:
        self._make_room()
        data = await asyncio.wait_for(
            self._reader.read(self._buf.available), self._ctx.settings.idle_timeout
        )
        if not data:
            return False
        self._buf[:] = data
        return True

    def _make_room(self) -> None:
        """Grow the buffer for a frame larger than it (up to :data:`MAX_FRAME`)."""
        filled = self._buf.filled
        if filled < 4 or self._buf.available:
            return
        need = int.from_bytes(self._buf[0:4], "big") + 4
        if need > MAX_FRAME:
            raise MilterProtocolError(f"frame of {need} bytes over {MAX_FRAME}", "too_large")
        bigger = SimpleBuffer(max(need, 2 * len(self._buf)))
        bigger[:] = self._buf[:].tobytes()
        self._buf = bigger

    async def _handle(self, message: m.Message) -> None:
        state = self._state
        message.freeze()
        match message:
            case m.Negotiate():
                await self._send(negotiated(message))
                return
            case m.Macro():
                state.macro(message.macros)
            case m.Connect():
                state.client_ip = str(message.address) if message.address else ""
            case m.Helo():
                state.helo = message.hostname
            case m.EnvelopeFrom():
                state.mail(bytes(message.sender), [bytes(a) for a in message.arguments])
            case m.EnvelopeRecipient():
                state.rcpt(bytes(message.recipient), [bytes(a) for a in message.arguments])
            case m.Header():
                state.header(message.name, bytes(message.value))
            case m.Body():
                state.body(bytes(message.content))
            case m.EndOfMessage():
                state.body(bytes(message.content))
                await self._end_of_message()
                return
            case m.Abort():
                state.reset()
        if self._proto.needs_response(message):  # type: ignore[arg-type]
            await self._send(m.Continue())

    async def _end_of_message(self) -> None:
        self.busy = True  # until the answer is sent: shutdown waits for it
        try:
            eom = EndOfMessage(self._ctx, self._state)
            keepalive = asyncio.create_task(self._progress())
            try:
                answer = await eom.run()
            finally:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keepalive
            await self._send(*answer.edits, answer.final)  # one write: no frame waits
        finally:
            self.busy = False
        self._state.reset()

    async def _progress(self) -> None:
        """Tell the MTA every ``progress_interval`` seconds that the answer is coming."""
        while True:
            await asyncio.sleep(self._ctx.settings.progress_interval)
            await self._send(m.Progress())

    async def _send(self, *messages: FilterMessage | m.Progress) -> None:
        out = SimpleBuffer(sum(_frame_size(message) for message in messages))
        for message in messages:
            # Progress is allowed at end of message though kilter's union type lacks it.
            self._proto.write_to(out, cast(FilterMessage, message))
        self._writer.write(out[:].tobytes())
        await self._writer.drain()


def _frame_size(message: FilterMessage | m.Progress) -> int:
    size = 64
    for attr in ("name", "value", "content"):
        size += len(getattr(message, attr, b"") or b"")
    return size
