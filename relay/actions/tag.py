"""The ``X-CCGuard-*`` headers ccguard adds, and removal of any it did not add.

Trust rule: every ``X-CCGuard-*`` field a message arrives with is removed
before the message is delivered, whatever the action (see
:func:`strip_foreign_tags`), so a tag the upstream and its administrators see
was always written by this ccguard.  Ours are placed at the top of the header
block (below the trace header the SMTP front adds).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from relay.actions.headers import CRLF, RawField, assemble, assemble_pieces
from relay.inspect.parsed import ParsedMessage
from relay.policy.verdict import Verdict
from relay.settings import Action

__all__ = [
    "DKIM_BROKEN",
    "TAG_ACTION",
    "TAG_DKIM",
    "TAG_EXPOSURE",
    "TAG_PREFIX",
    "TAG_RULE",
    "Tags",
    "action_text",
    "add_tags",
    "exposure_text",
    "is_tag_field",
    "sanitise",
    "strip_foreign_tags",
    "tag_fields",
    "tag_message",
    "tag_pieces",
    "verdict_tags",
]

TAG_PREFIX = "X-CCGuard-"
TAG_ACTION = "X-CCGuard-Action"
TAG_RULE = "X-CCGuard-Rule"
TAG_EXPOSURE = "X-CCGuard-Exposure"
TAG_DKIM = "X-CCGuard-DKIM"
DKIM_BROKEN = "broken-by-rewrite"

_EXPOSURE_KEYS = ("visible_external", "external_domains", "visible_total", "unparseable")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=;:/ -]")
_TAG_KEY = TAG_PREFIX.lower()
_TAG_BYTES = _TAG_KEY.encode("ascii")
_CONTROLS = re.compile(rb"[\x00-\x1f\x7f]")

Tags = Sequence[tuple[str, str]]


def is_tag_field(field: RawField) -> bool:
    """True for any ``X-CCGuard-*`` field, whoever wrote it.

    Lines that are no field count too when one of them, with its control
    characters (C0, DEL) removed, starts with ``X-CCGuard-``: a reader or a
    later hop that drops a NUL (``X-CCGuard-Action``, NUL, ``: pass``) would see a tag.
    """
    if field.name:
        return field.key.startswith(_TAG_KEY)
    return any(
        _CONTROLS.sub(b"", line).lower().startswith(_TAG_BYTES) for line in field.raw.split(CRLF)
    )


def action_text(verdict: Verdict) -> str:
    """``rewrite``, ``quarantine``…; in monitor mode ``monitor; would=<action>``."""
    if verdict.monitor:
        would = verdict.matched_action or verdict.action
        return f"monitor; would={would}"
    return str(verdict.action)


def exposure_text(counts: Mapping[str, Any]) -> str:
    """``visible_external=312; external_domains=41; visible_total=320; unparseable=0``
    (plus ``header_too_large=1`` when so): counts only, never an address."""
    parts = [f"{key}={int(counts.get(key, 0))}" for key in _EXPOSURE_KEYS]
    if counts.get("header_too_large"):
        parts.append("header_too_large=1")
    return "; ".join(parts)


def verdict_tags(verdict: Verdict, *, action: Action | str | None = None) -> list[tuple[str, str]]:
    """Action, rule and exposure tags for ``verdict`` (``action`` overrides the
    action text, e.g. ``split`` on every copy)."""
    return [
        (TAG_ACTION, str(action) if action is not None else action_text(verdict)),
        (TAG_RULE, verdict.rule or "none"),
        (TAG_EXPOSURE, exposure_text(verdict.exposure.counts())),
    ]


def tag_fields(tags: Tags, eol: bytes = CRLF) -> list[RawField]:
    """``tags`` as header fields; values are reduced to a safe ASCII subset."""
    return [
        RawField(name, f"{name}: {_UNSAFE.sub('_', value)[:900]}".encode("ascii") + eol)
        for name, value in tags
    ]


def strip_foreign_tags(fields: Iterable[RawField]) -> list[RawField]:
    """``fields`` without any ``X-CCGuard-*`` field."""
    return [f for f in fields if not is_tag_field(f)]


def add_tags(message: ParsedMessage, tags: Tags) -> bytes:
    """``message`` with foreign tags removed and ``tags`` at the top of the header
    block; everything else unchanged."""
    return assemble(message, [*tag_fields(tags), *strip_foreign_tags(message.fields)])


def tag_message(message: ParsedMessage, verdict: Verdict) -> bytes:
    """The tag action: ``message`` with the verdict's ``X-CCGuard-*`` tags added."""
    return add_tags(message, verdict_tags(verdict))


def tag_pieces(message: ParsedMessage, verdict: Verdict) -> tuple[bytes, memoryview]:
    """:func:`tag_message` as (new header block, a view of the body), not joined."""
    fields = [*tag_fields(verdict_tags(verdict)), *strip_foreign_tags(message.fields)]
    return assemble_pieces(message, fields)


def sanitise(message: ParsedMessage) -> bytes:
    """``message`` without foreign ``X-CCGuard-*`` fields; the very same bytes
    (``message.data``, uncopied) when it has none (the common case for pass)."""
    if not any(is_tag_field(f) for f in message.fields):
        return message.data
    return add_tags(message, ())
