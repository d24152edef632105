"""The DATA reader gives the same result whether the rest of the message is already
buffered after its first line (cut into lines in one go) or arrives piece by
piece (line by line)."""

from __future__ import annotations

import asyncio

import pytest

from relay.smtp.data import DataOutcome, DataResult, read_data

CASES = {
    "plain": b"Subject: a\r\n\r\nhello\r\n",
    "dots": b".starts with a dot\r\n..two dots\r\nmid . dot\r\n.\r\n",  # "." line: the end
    "bare lf and dot": b"a\n.\nb\r\n\r\n.x\r\n",
    "empty line first": b"\r\n",
    "long line": b"x" * 2000 + b"\r\nafter\r\n",
    "big": b"y" * 900 + b"\r\n" + b"z" * 900 + b"\r\n",
}


async def read(chunks: list[bytes], fits_until: int) -> tuple[DataResult, list[int], int]:
    reader = asyncio.StreamReader(limit=2**16)
    asked: list[int] = []
    refusals = 0

    def fits(n: int) -> bool:
        asked.append(n)
        return n <= fits_until

    def refused() -> None:
        nonlocal refusals
        refusals += 1

    async def feed() -> None:
        for chunk in chunks:
            reader.feed_data(chunk)
            await asyncio.sleep(0)  # the reader runs between chunks
        reader.feed_eof()

    if len(chunks) == 1:
        reader.feed_data(chunks[0])  # all buffered before the reader starts
    feeding = asyncio.create_task(feed() if len(chunks) > 1 else asyncio.sleep(0))
    result = await read_data(reader, size_limit=1500, line_limit=1000, fits=fits, refused=refused)
    await feeding
    return result, asked, refusals


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("fits_until", [10**9, 500, 0])
async def test_bulk_and_line_by_line_agree(name: str, fits_until: int) -> None:
    stream = CASES[name] + b".\r\n"
    first_line = stream.index(b"\r\n") + 2
    pieces = await read([stream[i : i + 7] for i in range(0, len(stream), 7)], fits_until)
    for chunks in ([stream], [stream[:first_line], stream[first_line:]]):
        bulk = await read(chunks, fits_until)
        assert bulk[0] == pieces[0]
        assert bulk[2] == pieces[2]  # refused() as often
        # The reservation held at the end is the same (the last amount granted).
        granted = [n for n in bulk[1] if n <= fits_until]
        granted_pieces = [n for n in pieces[1] if n <= fits_until]
        assert granted[-1:] == granted_pieces[-1:]


async def test_dot_stuffing_removed_in_bulk() -> None:
    result, _, _ = await read([b"..a\r\n.b\r\nc\r\n.\r\n"], 10**9)
    assert result == DataResult(DataOutcome.COMPLETE, b".a\r\nb\r\nc\r\n")
