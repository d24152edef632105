"""Reading the DATA stream into one buffer, as aiosmtpd does but without a copy per line.

aiosmtpd 1.4 keeps every line as its own ``bytearray`` in a list and joins
them at the end: about three times the message in memory at the moment of the
join.  This reader follows the very same rules (RFC 5321 section 4.5.2: lines
end only at CRLF, the message ends only at CRLF ``.`` CRLF, a leading dot is
removed, an over-long line or an over-size message is read to its end and then
refused) but writes each line straight into an :class:`io.BytesIO`, whose
``getvalue()`` hands over its buffer without copying it: about one message in
memory.  The same rules mean the same defence against SMTP smuggling: a bare
LF, or a ``.`` after a bare LF, never ends the message.
"""

from __future__ import annotations

import asyncio
import enum
import io
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DataOutcome", "DataResult", "read_data"]

# How far ahead of the bytes received the in-flight reservation is grown, so
# the budget is asked once per this many bytes rather than once per line.
_RESERVE_STEP = 256 * 1024


class DataOutcome(enum.Enum):
    """How the DATA stream ended."""

    COMPLETE = enum.auto()
    LINE_TOO_LONG = enum.auto()
    TOO_BIG = enum.auto()
    NO_BUDGET = enum.auto()


@dataclass(frozen=True, slots=True)
class DataResult:
    """``content`` is the message (dot-unstuffed) when ``outcome`` is COMPLETE, else ``b""``."""

    outcome: DataOutcome
    content: bytes = b""


# A message at most this big that is already wholly in the reader's buffer is
# cut into lines in one go instead of one ``readuntil`` per line (docs/throughput.md).
_BULK_BYTES = 64 * 1024
_END = b"\r\n.\r\n"


class _Collector:
    """The per-line rules: limits, reservation, dot removal (one line at a time)."""

    def __init__(
        self,
        size_limit: int | None,
        line_limit: int,
        fits: Callable[[int], bool],
        refused: Callable[[], None],
    ) -> None:
        self.buffer = io.BytesIO()
        self.outcome = DataOutcome.COMPLETE
        self.received = self.reserved = 0
        self._size_limit, self._line_limit = size_limit, line_limit
        self._fits, self._refused = fits, refused

    def feed(self, line: bytes) -> None:
        self.received += len(line)
        mid_line = not line.endswith(b"\r\n")
        if self.outcome is not DataOutcome.COMPLETE:
            return
        if mid_line or len(line) > self._line_limit:
            self.outcome = DataOutcome.LINE_TOO_LONG
        elif self._size_limit and self.received > self._size_limit:
            self.outcome = DataOutcome.TOO_BIG
        elif self.received > self.reserved:
            self.reserved = _reserve(self.received, self._fits)
            if not self.reserved:
                self.outcome = DataOutcome.NO_BUDGET
                self._refused()
        if self.outcome is DataOutcome.COMPLETE:
            self.buffer.write(memoryview(line)[1:] if line[:1] == b"." else line)
        else:
            self.buffer = io.BytesIO()  # drop what was held at once

    def result(self) -> DataResult:
        if self.outcome is not DataOutcome.COMPLETE:
            return DataResult(self.outcome)
        return DataResult(self.outcome, self.buffer.getvalue())


async def read_data(
    reader: asyncio.StreamReader,
    *,
    size_limit: int | None,
    line_limit: int,
    fits: Callable[[int], bool],
    refused: Callable[[], None],
) -> DataResult:
    """Read up to the end-of-data line; ``fits(n)`` reserves ``n`` bytes or says no
    (leaving the reservation as it was), ``refused()`` is called once if they did not fit.

    Once a limit is hit the rest is read and discarded (nothing more is held),
    and the first limit hit is the outcome, as in aiosmtpd.
    """
    collector = _Collector(size_limit, line_limit, fits, refused)
    mid_line = False  # the last read ended without CRLF (an over-long line)
    first = True
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as exc:
            line = await reader.read(exc.consumed)
        if not mid_line and line == b".\r\n":
            break
        mid_line = not line.endswith(b"\r\n")
        collector.feed(line)
        if first and not mid_line:
            # The first line waited for the client; the rest of a small message
            # has usually arrived with it.
            first = False
            rest = await _take_buffered_message(reader)
            if rest is not None:
                return _bulk(rest, collector)
    return collector.result()


async def _take_buffered_message(reader: asyncio.StreamReader) -> bytes | None:
    """The rest of the message (after a line end) without its end line, if it and
    its end line are all buffered already and small; else None, nothing consumed."""
    buffered = getattr(reader, "_buffer", None)  # CPython's StreamReader keeps a bytearray
    if not isinstance(buffered, bytearray) or len(buffered) > _BULK_BYTES:
        return None
    if buffered.startswith(b".\r\n"):
        return None  # the end line comes next: the line loop handles it
    end = buffered.find(_END)
    if end < 0:
        return None
    block = await reader.readexactly(end + len(_END))  # buffered: returns at once
    return block[: -len(b".\r\n")]


def _bulk(body: bytes, collector: _Collector) -> DataResult:
    """The same rules as line by line, for the rest of a message whose every line
    ends in CRLF: when no limit is hit and the reservation made for the first line
    covers it all (the line loop would do nothing else), it is taken whole;
    otherwise its lines are fed one by one, as if read from the network."""
    lines = body.split(b"\r\n")[:-1]
    total = collector.received + len(body)
    size_limit = collector._size_limit
    clean = (
        collector.outcome is DataOutcome.COMPLETE
        and max(map(len, lines)) + 2 <= collector._line_limit
        and not (size_limit and total > size_limit)
        and total <= collector.reserved
    )
    if not clean:
        for line in lines:
            collector.feed(line + b"\r\n")
        return collector.result()
    collector.received = total
    if body[:1] != b"." and b"\r\n." not in body:
        collector.buffer.write(body)
    else:
        collector.buffer.write(b"\r\n".join(ln[1:] if ln[:1] == b"." else ln for ln in lines))
        collector.buffer.write(b"\r\n")
    return collector.result()


def _reserve(received: int, fits: Callable[[int], bool]) -> int:
    """Reserve a step ahead of ``received`` if possible, else exactly it; 0 if neither fits."""
    for amount in (received + _RESERVE_STEP, received):
        if fits(amount):
            return amount
    return 0
