"""Byte-level access to a message's header block, for edits that keep the rest intact.

The message is never parsed into an ``email.message.Message`` and serialised
again: a header block is cut into fields, each field kept as the exact bytes
it arrived as (folding, encodings and line endings included), and an edit
replaces, drops or inserts whole fields.  Everything not edited, and the body,
is therefore byte-for-byte the original.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from relay.inspect.headers import header_end, iter_raw_fields

__all__ = [
    "HeaderBlock",
    "RawField",
    "fold_list",
    "line_ending",
    "parse_header_block",
]

SOFT_LIMIT = 78
HARD_LIMIT = 998


@dataclass(frozen=True, slots=True)
class RawField:
    """One header field: ``name`` as written and ``raw``, its exact bytes
    including every continuation line and the final line ending.  ``name`` is
    ``""`` for a line that is not a field (kept as it was)."""

    name: str
    raw: bytes

    @property
    def key(self) -> str:
        """The lower-case field name, for comparisons."""
        return self.name.lower()

    def value(self) -> str:
        """The field body after the colon, still folded, decoded as UTF-8
        (undecodable bytes survive as surrogate escapes)."""
        body = self.raw.partition(b":")[2]
        return body.decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class HeaderBlock:
    """A message cut into its header fields, the blank separator line and the body."""

    fields: tuple[RawField, ...]
    separator: bytes
    #: A view into the message, not a copy: :meth:`assemble` then copies the
    #: body once, into the result (a large message is not held three times).
    body: memoryview
    eol: bytes

    def assemble(self, fields: Iterable[RawField]) -> bytes:
        """The message with ``fields`` as header fields and the original rest."""
        head, body = self.assemble_pieces(fields)
        return head + body

    def assemble_pieces(self, fields: Iterable[RawField]) -> tuple[bytes, memoryview]:
        """:meth:`assemble` as (new header block with separator, the original body),
        not joined: a copy to send need not copy the body.

        If an edit left a last line whose ending would not form the blank
        separator line with ``separator`` (a bare CR, or LF before CRLF), that
        ending is completed, so the body stays the body.
        """
        head = b"".join(f.raw for f in fields)
        if head and self.separator:
            if head.endswith(b"\r"):
                head += b"\n"
            if self.separator == b"\r\n" and not head.endswith(b"\r\n"):
                head = head[:-1] + b"\r\n"
        return head + self.separator, self.body


def line_ending(message: bytes) -> bytes:
    """``b"\\r\\n"`` if the first line of ``message`` ends so, else ``b"\\n"``."""
    newline = message.find(b"\n")
    return b"\r\n" if newline > 0 and message[newline - 1 : newline] == b"\r" else b"\n"


def _cut(message: bytes) -> tuple[bytes, bytes, memoryview]:
    """(header lines, blank separator line, body), as relay.inspect finds them."""
    end = header_end(message)
    if end is None:
        return message, b"", memoryview(b"")
    sep = b"\r\n" if message[:end].endswith(b"\r\n\r\n") or end == 2 else b"\n"
    body = memoryview(message)[end:]
    if end == len(sep) and message.startswith(sep):
        return b"", sep, body
    return message[: end - len(sep)], sep, body


def parse_header_block(message: bytes) -> HeaderBlock:
    """Cut ``message`` into fields, separator and body.

    Lines are split and fields recognised by the very function
    :mod:`relay.inspect` uses (:func:`~relay.inspect.headers.iter_raw_fields`),
    so every field inspection counted is a field this module can edit.  Lines
    that are neither a field nor a continuation are kept as nameless fields,
    so nothing is lost or reordered.
    """
    head, sep, body = _cut(message)
    fields = tuple(RawField(name, raw) for name, raw in iter_raw_fields(head))
    return HeaderBlock(fields, sep, body, line_ending(message))


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


def fold_list(name: str, items: list[str], eol: bytes) -> bytes:
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
