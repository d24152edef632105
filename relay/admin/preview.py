"""Turn a stored message into safe, plain things to show: headers, text, parts, exposure.

The message's HTML is never rendered: an HTML-only body is reduced to its
text (tags dropped, no links followed, no images), and everything is then
escaped by the templates like any other text.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from html.parser import HTMLParser
from typing import Any

from relay.actions.headers import assemble
from relay.inspect.parsed import HeaderField, ParsedMessage, parse_message

__all__ = ["MessagePreview", "Part", "explain_exposure", "preview_message"]

MAX_PREVIEW_CHARS = 20_000
MAX_HEADER_CHARS = 2_000
#: Only this much of the header block is shown (a 20,000-address Cc is ~500 KiB).
MAX_HEADER_BYTES = 64 * 1024
HEADERS_CUT_NOTE = (
    f"The header block is larger than {MAX_HEADER_BYTES // 1024} KiB; only its start is shown."
)
STRUCTURE_NOTE = "The message's MIME structure could not be read; its raw text is shown."
_HEADER_LABELS = {"to": "To", "cc": "Cc", "resent-to": "Resent-To", "resent-cc": "Resent-Cc"}


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME leaf part other than the previewed text."""

    content_type: str
    filename: str
    size: int


@dataclass(frozen=True, slots=True)
class MessagePreview:
    """What the detail page shows of a message (all plain text, escaped on output)."""

    headers: list[tuple[str, str]]
    text: str
    truncated: bool
    from_html: bool
    parts: list[Part]
    notes: tuple[str, ...] = ()


class _TextOnly(HTMLParser):
    _SKIP = frozenset({"script", "style", "head", "title"})
    _BREAK = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BREAK:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.chunks.append(data)


def html_to_text(html: str) -> str:
    """The visible text of an HTML document, without any markup."""
    parser = _TextOnly()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.chunks).splitlines())
    return "\n".join(line for line in lines if line)


def _capped(message: ParsedMessage) -> tuple[list[HeaderField], bytes, bool]:
    """(fields, bytes, whether cut): ``message`` with its header block cut to
    :data:`MAX_HEADER_BYTES` (display only)."""
    if not message.header_too_large(MAX_HEADER_BYTES):
        return list(message.fields), message.data, False
    fields = list(message.fields_within(MAX_HEADER_BYTES))
    return fields, assemble(message, fields), True


def _header_text(raw_value: bytes) -> str:
    """A header value for display: unfolded, RFC 2047 words decoded where they can be."""
    value = " ".join(raw_value[: MAX_HEADER_CHARS * 4].decode("utf-8", "replace").split())
    with contextlib.suppress(Exception):  # a malformed encoded word: show it as written
        value = str(make_header(decode_header(value)))
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value[:MAX_HEADER_CHARS] + ("…" if len(value) > MAX_HEADER_CHARS else "")


def _headers(fields: list[HeaderField]) -> list[tuple[str, str]]:
    """Every header field as (name, value), from the raw fields: nothing here can fail."""
    return [(field.name, _header_text(field.raw_value)) for field in fields if field.name]


def _decoded_payload(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")


def _text_part(msg: Message) -> Message | None:
    """The first inline text/plain part, else the first inline text/html part."""
    leaves = [
        p for p in msg.walk()
        if not p.is_multipart()
        and p.get_content_maintype() == "text"
        and not str(p.get("content-disposition", "")).lower().startswith("attachment")
    ]  # fmt: skip
    for subtype in ("plain", "html"):
        for part in leaves:
            if part.get_content_subtype() == subtype:
                return part
    return None


def _body(message: bytes) -> tuple[str, bool, list[Part]]:
    """(text, whether it came from HTML, the other parts); may raise on hostile input."""
    msg = email.message_from_bytes(message, policy=email.policy.compat32)
    if msg.get_content_maintype() == "multipart" and not msg.is_multipart():
        raise ValueError("multipart message whose parts could not be found")
    body = _text_part(msg)
    text, from_html = "", False
    if body is not None:
        text = _decoded_payload(body).replace("\r\n", "\n")
        if body.get_content_subtype() == "html":
            text, from_html = html_to_text(text), True
    parts = [
        Part(p.get_content_type(), p.get_filename() or "", len(p.get_payload(decode=True) or b""))
        for p in msg.walk()
        if not p.is_multipart() and p is not body
    ]
    return text, from_html, parts


def _raw_body(message: ParsedMessage) -> str:
    return message.body.decode("utf-8", "replace")


def preview_message(raw: bytes) -> MessagePreview:
    """Headers, a text preview (HTML reduced to text) and the other parts of ``raw``.

    Never raises: headers come from the raw fields, and a body whose MIME
    structure cannot be parsed is shown as raw text, with a note saying so.
    The bytes are parsed as on receipt (line endings normalised: rows stored
    by older versions may hold bare CR/LF), so the preview shows the fields
    inspection counted and a release delivers.
    Blocking (a big message takes a while): call it in a thread from async code.
    """
    message = parse_message(raw)
    fields, capped, cut = _capped(message)
    notes = [HEADERS_CUT_NOTE] if cut else []
    try:
        text, from_html, parts = _body(capped)
    except Exception:  # hostile MIME: any parser failure falls back to the raw text
        text, from_html, parts = _raw_body(message), False, []
        notes.append(STRUCTURE_NOTE)
    truncated = len(text) > MAX_PREVIEW_CHARS
    return MessagePreview(
        _headers(fields), text[:MAX_PREVIEW_CHARS], truncated, from_html, parts, tuple(notes)
    )


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _calendar_lines(calendar: Mapping[str, Any]) -> list[str]:
    if not (calendar.get("invitation") or calendar.get("truncated")):
        return []
    ext = int(calendar.get("attendees_external", 0))
    internal = int(calendar.get("attendees_internal", 0))
    lines = [
        f"It is a calendar invitation: its attendee list shows "
        f"{_plural(ext, 'external attendee', 'external attendees')} and {internal} of our own "
        "to every invitee (counted above). Releasing it with recipients hidden does not "
        "hide them."
    ]
    if calendar.get("truncated"):
        lines.append("Its calendar data could not be read completely; there may be more.")
    return lines


def explain_exposure(exposure: Mapping[str, Any], rule: str | None, reason: str) -> list[str]:
    """Plain-language sentences saying what the message would have disclosed and why it is held."""
    ext = int(exposure.get("visible_external", 0))
    domains = int(exposure.get("external_domains", 0))
    total = int(exposure.get("visible_total", 0))
    internal = int(exposure.get("visible_internal", 0))
    lines = [
        f"Every recipient of this message can read {_plural(total, 'address', 'addresses')} "
        f"in its recipient headers: {_plural(ext, 'external address', 'external addresses')} "
        f"from {_plural(domains, 'domain', 'different domains')}, and {internal} of our own."
    ]
    per_header = exposure.get("per_header") or {}
    if per_header:
        where = ", ".join(
            f"{_HEADER_LABELS.get(h, h)}: {n}" for h, n in sorted(per_header.items()) if n
        )
        if where:
            lines.append(f"Where they appear: {where}.")
    if exposure.get("unparseable"):
        lines.append(
            f"{exposure['unparseable']} address-like entries could not be parsed; "
            "they are counted as external."
        )
    if exposure.get("header_too_large"):
        lines.append("The header block was too large to inspect completely.")
    lines.extend(_calendar_lines(exposure.get("calendar") or {}))
    held_by = f"rule “{rule}”" if rule else "the policy"
    why = f": {reason.rstrip('.')}." if reason else "."
    lines.append(f"It was held by {held_by}{why}")
    lines.append(
        "Release as sent delivers it unchanged (everyone sees everyone). "
        "Release with recipients hidden removes the external addresses from To and Cc; "
        "every recipient still gets the message."
    )
    return lines
