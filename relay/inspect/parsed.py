"""A message as ccguard handles it: line endings normalised once, header block cut once (pure).

Every stage works on the one :class:`ParsedMessage` made from the client's
bytes at end of DATA (or from a file by ``ccguard check``, or from a
quarantine row): inspection counts its fields, the actions edit them, the
quarantine stores its bytes.  What ccguard inspects and strips is therefore
exactly what it delivers.

Line endings: every bare CR and bare LF becomes CRLF
(:func:`normalise_line_endings`), like Postfix's ``smtpd_forbid_bare_newline
= normalize`` and like the upstream client would do on the way out anyway.
After that only CRLF ends a line, so finding the end of the header block and
splitting it into lines cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from relay.inspect.headers import header_end, iter_raw_fields

__all__ = ["CRLF", "HeaderField", "ParsedMessage", "normalise_line_endings", "parse_message"]

CRLF = b"\r\n"
_BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


def normalise_line_endings(data: bytes) -> bytes:
    """``data`` with every bare CR and bare LF replaced by CRLF.

    Returns the very same object, uncopied, when there is nothing to change
    (the common case: three fast counts, no allocation).
    """
    crlf = data.count(CRLF)
    if data.count(b"\r") == crlf and data.count(b"\n") == crlf:
        return data
    return _BARE.sub(CRLF, data)


@dataclass(frozen=True, slots=True)
class HeaderField:
    """One header field: ``name`` as written and ``raw``, its exact bytes
    including every continuation line and the final CRLF.  ``name`` is ``""``
    for lines that are no field (a mangled name; kept as they were)."""

    name: str
    raw: bytes

    @property
    def key(self) -> str:
        """The lower-case field name, for comparisons."""
        return self.name.lower()

    @property
    def raw_value(self) -> bytes:
        """The bytes after the colon, still folded."""
        return self.raw.partition(b":")[2]

    def value(self) -> str:
        """The field body after the colon, still folded, decoded as UTF-8
        (undecodable bytes survive as surrogate escapes)."""
        return self.raw_value.decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """A message with CRLF line endings only, cut into header fields, the
    blank separator line and the body.

    ``data`` is the whole message (``b"".join(f.raw for f in fields) +
    separator + body == data``); ``separator`` is ``b"\\r\\n"``, or ``b""``
    when the message has no blank line (it is all header).  ``normalised``
    says whether bare CR/LF were replaced when it was made.
    """

    data: bytes
    fields: tuple[HeaderField, ...]
    separator: bytes
    body_offset: int
    normalised: bool = False

    @property
    def size(self) -> int:
        """Length of ``data`` in bytes."""
        return len(self.data)

    @property
    def body(self) -> bytes:
        """The body (a copy; see :meth:`body_view` for large messages)."""
        return self.data[self.body_offset :]

    def body_view(self) -> memoryview:
        """The body without copying it."""
        return memoryview(self.data)[self.body_offset :]

    def header_too_large(self, limit: int) -> bool:
        """True when the header block (with its blank line) is longer than ``limit``."""
        return self.body_offset > limit

    def fields_within(self, limit: int) -> Iterator[HeaderField]:
        """The fields in the first ``limit`` bytes; a field crossing the limit
        comes cut there (its piece split like any header text)."""
        offset = 0
        for field in self.fields:
            end = offset + len(field.raw)
            if end > limit:
                if offset < limit:
                    pieces = iter_raw_fields(field.raw[: limit - offset])
                    yield from (HeaderField(n, r) for n, r in pieces)
                return
            yield field
            offset = end

    def without_first_field(self) -> ParsedMessage:
        """This message minus its first header field (e.g. a trace header
        ccguard added in front of the client's bytes)."""
        if not self.fields:
            return self
        cut = len(self.fields[0].raw)
        return ParsedMessage(
            self.data[cut:], self.fields[1:], self.separator, self.body_offset - cut,
            self.normalised,
        )  # fmt: skip

    def values(self, key: str) -> list[bytes]:
        """Raw values (after the colon) of every field named ``key`` (lower case)."""
        return [f.raw_value for f in self.fields if f.key == key]


def parse_message(data: bytes) -> ParsedMessage:
    """Normalise ``data``'s line endings and cut it into fields, separator and body.

    Fields are recognised by :func:`relay.inspect.headers.iter_raw_fields`:
    lines that are neither a field nor a continuation are kept as nameless
    fields, so nothing is lost or reordered.
    """
    text = normalise_line_endings(data)
    end = header_end(text)
    if end is None:
        head_end, body_offset, separator = len(text), len(text), b""
    else:
        head_end, body_offset, separator = end - 2, end, CRLF
    head = text[:head_end] if head_end < len(text) else text
    fields = tuple(HeaderField(name, raw) for name, raw in iter_raw_fields(head))
    return ParsedMessage(text, fields, separator, body_offset, normalised=text is not data)
