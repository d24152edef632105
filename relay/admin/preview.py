"""Turn a stored message into safe, plain things to show: headers, text, parts, exposure.

The message's HTML is never rendered: an HTML-only body is reduced to its
text (tags dropped, no links followed, no images), and everything is then
escaped by the templates like any other text.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage, MIMEPart
from html.parser import HTMLParser
from typing import Any

__all__ = ["MessagePreview", "Part", "explain_exposure", "preview_message"]

MAX_PREVIEW_CHARS = 20_000
MAX_HEADER_CHARS = 2_000
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


def _content(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def _headers(msg: EmailMessage) -> list[tuple[str, str]]:
    out = []
    for name, value in msg.items():
        text = " ".join(str(value).split())
        out.append((name, text[:MAX_HEADER_CHARS] + ("…" if len(text) > MAX_HEADER_CHARS else "")))
    return out


def preview_message(raw: bytes) -> MessagePreview:
    """Headers, a text preview (HTML reduced to text) and the other parts of ``raw``."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(preferencelist=("plain", "html"))
    text, from_html = "", False
    if body is not None:
        text = _content(body)
        if body.get_content_type() == "text/html":
            text, from_html = html_to_text(text), True
    parts = [
        Part(p.get_content_type(), p.get_filename() or "", len(p.get_payload(decode=True) or b""))
        for p in msg.walk()
        if not p.is_multipart() and p is not body
    ]
    truncated = len(text) > MAX_PREVIEW_CHARS
    return MessagePreview(_headers(msg), text[:MAX_PREVIEW_CHARS], truncated, from_html, parts)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


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
    held_by = f"rule “{rule}”" if rule else "the policy"
    why = f": {reason.rstrip('.')}." if reason else "."
    lines.append(f"It was held by {held_by}{why}")
    lines.append(
        "Release as sent delivers it unchanged (everyone sees everyone). "
        "Release with recipients hidden removes the external addresses from To and Cc; "
        "every recipient still gets the message."
    )
    return lines
