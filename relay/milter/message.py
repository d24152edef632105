"""The one :class:`ParsedMessage` of a milter transaction, made from the MTA's own cut.

The MTA has already split the header block into fields and sends each as a
(name, value) pair, then the body in chunks.  Those pairs *are* the fields:
each becomes a :class:`HeaderField` whose ``raw`` is ``name:value`` with the
MTA's folding newlines written as CRLF, exactly the bytes the SMTP front would
have cut from the same message.  Nothing is parsed a second time (pure).

The value keeps its leading blanks because the front asks for them
(``SMFIP_HDR_LEADSPC``): ``To:bob`` and ``To: bob`` stay what they were.
"""

from __future__ import annotations

import re

from relay.inspect.parsed import CRLF, HeaderField, ParsedMessage, normalise_line_endings

__all__ = ["MessageBuilder", "field_from_milter", "milter_value"]

_EOL = re.compile(rb"\r?\n")


def field_from_milter(name: str, value: bytes) -> HeaderField:
    """The header field the MTA sent as ``name`` and ``value`` (folded with LF or CRLF)."""
    raw = name.encode("ascii", "surrogateescape") + b":" + _EOL.sub(CRLF, value) + CRLF
    return HeaderField(name, raw)


def milter_value(field: HeaderField) -> bytes:
    """A field's value as a milter edit carries it: after the colon, leading blanks
    kept, folding as bare LF (the MTA writes its own line ends), no final newline."""
    value = field.raw_value
    if value.endswith(CRLF):
        value = value[:-2]
    return value.replace(CRLF, b"\n")


class MessageBuilder:
    """Collects one message's header fields and body chunks, then makes it."""

    def __init__(self) -> None:
        self.fields: list[HeaderField] = []
        self._body: list[bytes] = []
        self.size = 0

    def header(self, name: str, value: bytes) -> None:
        """One header field, in the order the MTA sent them."""
        field = field_from_milter(name, value)
        self.fields.append(field)
        self.size += len(field.raw)

    def body(self, chunk: bytes) -> None:
        """One body chunk."""
        self._body.append(chunk)
        self.size += len(chunk)

    def build(self) -> ParsedMessage:
        """The message as ccguard's stages see it: fields, blank line, body
        (the body's line endings normalised to CRLF, as on the SMTP path)."""
        head = b"".join(f.raw for f in self.fields)
        raw_body = b"".join(self._body)
        body = normalise_line_endings(raw_body)
        data = head + CRLF + body
        return ParsedMessage(
            data, tuple(self.fields), CRLF, len(head) + 2, normalised=body is not raw_body
        )
