"""Sending a message's DATA in bounded chunks instead of one whole-message copy per step.

aiosmtplib's ``SMTP.data()`` normalises line endings, dot-stuffs and appends the
terminator each with a whole-message copy, then writes the lot to the transport
at once (which keeps another copy of whatever the socket did not take): about
four times the message at the peak.  :func:`send_data` sends the same bytes on
the wire — CRLF line endings, a dot doubled at the start of a line, ``.`` CRLF
at the end — from the message's *pieces* (e.g. ccguard's Received header and
the client's bytes, never concatenated), a slice of at most ``CHUNK`` bytes at
a time, waiting for the socket to drain between slices.  A slice is copied
only when it needs stuffing or normalising.  It uses aiosmtplib's protocol
object (command lock, response reader, drain) the way ``execute_data_command``
does; see docs/memory.md.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Sequence

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

__all__ = ["CHUNK", "Piece", "send_data", "wire_chunks"]

#: Largest slice handed to the transport at once.
CHUNK = 256 * 1024

#: What a message may be made of: bytes, or views of them (a body not copied).
Piece = bytes | memoryview

_LF = re.compile(rb"\n")
_ANY_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")
_LINE_START_DOT = re.compile(rb"(?m)^\.")


def wire_chunks(pieces: Sequence[Piece], chunk: int = CHUNK) -> Iterator[Piece]:
    """The DATA payload of the message ``b"".join(pieces)``, terminator included, in slices.

    Every piece but the last should end with a line ending (a piece that does
    not is joined to the next, a copy); then each slice starts a line, so
    stuffing and normalising a slice alone gives the same bytes as doing it
    to the whole message.
    """
    last = b""
    for piece in _whole_lines(pieces):
        view = memoryview(piece)
        start = 0
        while start < len(view):
            newline = _LF.search(view, min(start + chunk, len(view)) - 1)
            end = newline.end() if newline else len(view)
            out = _on_the_wire(view[start:end])
            if len(out):
                last = bytes(out[-2:])
                yield out
            start = end
    if not last.endswith(b"\r\n"):
        yield b"\r\n"
    yield b".\r\n"


def _whole_lines(pieces: Sequence[Piece]) -> Iterator[Piece]:
    pending = b""
    for index, piece in enumerate(pieces):
        if pending:
            piece, pending = pending + piece, b""
        if piece[-1:] == b"\n" or index == len(pieces) - 1:
            yield piece
        else:
            pending = bytes(piece)


def _on_the_wire(part: memoryview) -> bytes | memoryview:
    # bytes.count and `in` run at memchr speed; the regex search they replace
    # (lookarounds at every CR and LF) cost ~110 us for a 4 KiB message, ~9 us now.
    # The copy is of one slice (<= CHUNK), dropped at once when nothing changes.
    raw = part.tobytes()
    crlf = raw.count(b"\r\n")
    out: bytes | memoryview = part
    if raw.count(b"\r") != crlf or raw.count(b"\n") != crlf:  # a bare CR or LF
        raw = out = _ANY_LINE_END.sub(b"\r\n", raw)
    if raw[:1] == b"." or b"\n." in raw:
        return _LINE_START_DOT.sub(b"..", raw)
    return out


async def send_data(
    smtp: aiosmtplib.SMTP, pieces: Sequence[Piece], *, timeout: float | None
) -> SMTPResponse:
    """DATA, the payload of ``pieces`` and the final reply, like ``smtp.data(b"".join(pieces))``.

    Raises what ``smtp.data`` raises (SMTPDataError, SMTPServerDisconnected,
    SMTPTimeoutError); on a disconnect or timeout the connection is closed.
    """
    protocol = smtp.protocol
    if protocol is None or protocol._command_lock is None:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost")
    try:
        async with protocol._command_lock:
            return await _transfer(protocol, pieces, timeout)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        smtp.close()
        raise


async def _transfer(
    protocol: SMTPProtocol, pieces: Sequence[Piece], timeout: float | None
) -> SMTPResponse:
    protocol._response_pending = True
    protocol.write(b"DATA\r\n")
    start = await protocol.read_response(timeout=timeout)
    if start.code != aiosmtplib.SMTPStatus.start_input:
        raise aiosmtplib.SMTPDataError(start.code, start.message)
    protocol._response_pending = True  # an early reply is kept for read_response below
    batch: list[Piece] = []
    size = 0
    for part in wire_chunks(pieces):
        batch.append(part)
        size += len(part)
        if size >= CHUNK:
            await _write(protocol, batch, timeout)
            batch, size = [], 0
    if batch:
        await _write(protocol, batch, timeout)
    response = await protocol.read_response(timeout=timeout)
    if response.code != aiosmtplib.SMTPStatus.completed:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    return response


async def _write(protocol: SMTPProtocol, batch: list[Piece], timeout: float | None) -> None:
    # Small parts (a whole small message, its trace header, the terminator) go in
    # one write, one system call; a large slice goes as it is, uncopied.
    data = batch[0] if len(batch) == 1 else b"".join(batch)
    protocol.write(data)  # type: ignore[arg-type]  # any bytes-like object will do
    await _drain(protocol, timeout)


async def _drain(protocol: SMTPProtocol, timeout: float | None) -> None:
    try:
        await asyncio.wait_for(protocol._drain_helper(), timeout)
    except TimeoutError as exc:
        raise aiosmtplib.SMTPTimeoutError("Timed out sending the message") from exc
    except ConnectionError as exc:
        raise aiosmtplib.SMTPServerDisconnected("Connection lost sending the message") from exc
