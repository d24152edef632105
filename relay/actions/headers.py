"""Byte-level edits of a message's header block that keep the rest intact.

The message is never parsed into an ``email.message.Message`` and serialised
again: the :class:`~relay.inspect.parsed.ParsedMessage` made once on receipt
holds each field as the exact bytes it arrived as (folding and encodings
included, line endings normalised to CRLF), and an edit replaces, drops or
inserts whole fields.  Everything not edited, and the body, is therefore
byte-for-byte what was inspected.
"""

from __future__ import annotations

from collections.abc import Iterable

from relay.inspect.parsed import CRLF, HeaderField, ParsedMessage

__all__ = [
    "CRLF",
    "RawField",
    "assemble",
    "assemble_pieces",
    "fold_list",
]

SOFT_LIMIT = 78
HARD_LIMIT = 998

RawField = HeaderField
"""A header field as the actions see it: the one type inspection made."""


def assemble(message: ParsedMessage, fields: Iterable[HeaderField]) -> bytes:
    """``message`` with ``fields`` as its header fields and its own separator and body.

    A field whose last line has no CRLF (the last line of a message with no
    line break at its end) gets one when another field follows it or the
    separator does, so no two fields run together.
    """
    head, body = assemble_pieces(message, fields)
    return head + body


def assemble_pieces(
    message: ParsedMessage, fields: Iterable[HeaderField]
) -> tuple[bytes, memoryview]:
    """:func:`assemble` as (new header block with its separator, a view of the
    body), not joined: a copy sent upstream need not copy the body."""
    raws = [f.raw for f in fields]
    for index, raw in enumerate(raws):
        last = index == len(raws) - 1
        if not raw.endswith(CRLF) and not (last and not message.separator):
            raws[index] = raw + CRLF
    return b"".join([*raws, message.separator]), message.body_view()


def _break_at_spaces(line: str) -> list[str]:
    """Break a line longer than the hard limit at its own spaces; every line
    after the first starts with the space it was broken at."""
    words = line.split(" ")
    out: list[str] = []
    cur = words[0]
    for word in words[1:]:
        if cur.strip() and len(cur) + 1 + len(word) > SOFT_LIMIT:
            out.append(cur)
            cur = " " + word
        else:
            cur = f"{cur} {word}"
    out.append(cur)
    return out


def fold_list(name: str, items: list[str], eol: bytes = CRLF) -> bytes:
    """``Name: a, b, c`` folded after commas so lines stay within 78 characters
    where possible and never exceed 998 (an item longer than that is broken
    at its own spaces, which RFC 5322 folding allows)."""
    lines: list[str] = []
    cur = f"{name}:"
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "")
        if cur == f"{name}:" or len(cur) + 1 + len(piece) <= SOFT_LIMIT:
            cur = f"{cur} {piece}"
        else:
            lines.append(cur)
            cur = f" {piece}"
    lines.append(cur)
    folded: list[str] = []
    for line in lines:
        too_long = len(line.encode("utf-8", "surrogateescape")) > HARD_LIMIT
        folded.extend(_break_at_spaces(line) if too_long else [line])
    newline = eol.decode("ascii")
    return (newline.join(folded) + newline).encode("utf-8", "surrogateescape")
