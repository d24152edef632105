"""Finding the header block and its fields in message bytes (pure).

The bytes are expected with CRLF line endings only, as
:func:`relay.inspect.parsed.parse_message` makes them: callers go through
:class:`~relay.inspect.parsed.ParsedMessage` rather than these functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

__all__ = [
    "decode_header_value",
    "field_name",
    "header_end",
    "iter_raw_fields",
    "split_header_block",
]

# RFC 5322 ftext: printable US-ASCII except the colon.
_FTEXT = re.compile(rb"[\x21-\x39\x3b-\x7e]+")


def header_end(data: bytes) -> int | None:
    """Index just past the blank line ending the header block, or None if
    ``data`` holds no blank line (the header block may continue).

    Only CRLF ends a line: ``data`` has been normalised."""
    if data.startswith(b"\r\n"):
        return 2
    index = data.find(b"\r\n\r\n")
    return None if index < 0 else index + 4


def split_header_block(message: bytes) -> tuple[bytes, bytes]:
    """(header block including its terminating blank line, body).

    A message without a blank line is all header and has an empty body.
    ``head + body == message`` always.  (For pieces of normalised bytes;
    a message is cut by :func:`relay.inspect.parsed.parse_message`.)
    """
    end = header_end(message)
    if end is None:
        return message, b""
    return message[:end], message[end:]


def field_name(line: bytes) -> str | None:
    """The field name ``line`` starts, as written, or None if it starts none.

    A name is RFC 5322 ftext (printable ASCII, no colon); blanks between it
    and the colon (obsolete syntax) are tolerated, blanks before it are not
    (such a line is a continuation, or junk when there is nothing to continue).
    """
    name, colon, _ = line.partition(b":")
    name = name.rstrip(b" \t")
    if not colon or not _FTEXT.fullmatch(name):
        return None
    return name.decode("ascii")


def iter_raw_fields(head: bytes) -> Iterator[tuple[str, bytes]]:
    """(name as written, exact bytes) of every field in ``head``, in order.

    Lines are split where :meth:`bytes.splitlines` splits them, which on
    normalised bytes is exactly at each CRLF.  A field's bytes include its continuation
    lines and line endings.  Lines that are neither a field nor a continuation
    (e.g. ``, b@example.com`` where a bare CR was, or ``To\\x00: ...``)
    come as name ``""``, runs of
    them together with any continuation lines, so nothing is lost.
    """
    name = ""
    parts: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if name and line[:1] in (b" ", b"\t"):
            parts.append(line)
            continue
        new = field_name(line)
        if new is None and parts and not name:
            parts.append(line)
            continue
        if parts:
            yield name, b"".join(parts)
        name, parts = new or "", [line]
    if parts:
        yield name, b"".join(parts)


def decode_header_value(raw: bytes) -> str:
    """Header bytes as text: UTF-8 (RFC 6532); other bytes kept reversibly as
    surrogate escapes, so ``value.encode("utf-8", "surrogateescape") == raw``."""
    return raw.decode("utf-8", "surrogateescape")
