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
    buffer = io.BytesIO()
    outcome = DataOutcome.COMPLETE
    received = reserved = 0
    mid_line = False  # the last read ended without CRLF (an over-long line)
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError as exc:
            line = await reader.read(exc.consumed)
        if not mid_line and line == b".\r\n":
            break
        received += len(line)
        mid_line = not line.endswith(b"\r\n")
        if outcome is not DataOutcome.COMPLETE:
            continue
        if mid_line or len(line) > line_limit:
            outcome = DataOutcome.LINE_TOO_LONG
        elif size_limit and received > size_limit:
            outcome = DataOutcome.TOO_BIG
        elif received > reserved:
            reserved = _reserve(received, fits)
            if not reserved:
                outcome = DataOutcome.NO_BUDGET
                refused()
        if outcome is DataOutcome.COMPLETE:
            buffer.write(memoryview(line)[1:] if line[:1] == b"." else line)
        else:
            buffer = io.BytesIO()  # drop what was held at once
    if outcome is not DataOutcome.COMPLETE:
        return DataResult(outcome)
    return DataResult(outcome, buffer.getvalue())


def _reserve(received: int, fits: Callable[[int], bool]) -> int:
    """Reserve a step ahead of ``received`` if possible, else exactly it; 0 if neither fits."""
    for amount in (received + _RESERVE_STEP, received):
        if fits(amount):
            return amount
    return 0
