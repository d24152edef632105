"""Calendar invitations: the addresses a calendar part shows every recipient (pure).

An invitation lists every ATTENDEE and the ORGANIZER, and every recipient's
mail reader shows them, whatever To and Cc say.  This module finds the
calendar parts of a message (``text/calendar``, ``application/ics`` or a
``.ics`` / ``.vcs`` attachment, at any depth of a bounded MIME walk, see
:mod:`relay.inspect.mime`), decodes them (base64, quoted-printable) within a
byte budget, parses them with :mod:`icalendar` and returns the ``mailto:``
addresses of ATTENDEE and ORGANIZER (and of their SENT-BY, DELEGATED-TO,
DELEGATED-FROM, MEMBER and EMAIL parameters, and any address written in a CN).

Every METHOD counts (REQUEST, PUBLISH, ADD, CANCEL, REPLY, COUNTER, … and none):
the method only tells the receiving client what to do with the data, while the
addresses in it are shown to everyone who opens it.  A REPLY normally holds one
ATTENDEE, so counting it never inflates.

Failing closed: a calendar part larger than what is left of the byte budget,
a MIME tree over its part or depth bounds, data that cannot be decoded, or
calendar text the parser refuses or only partly reads sets ``truncated``; the
address-like text of ATTENDEE/ORGANIZER lines the parser did not read is still
counted (as ``unparseable``, i.e. external).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from relay.inspect.addresses import address_like_tokens
from relay.inspect.encoded_words import decode_encoded_words
from relay.inspect.mime import MimeLeaf, content_fields, media_type, walk_mime

if TYPE_CHECKING:
    from icalendar import Calendar

__all__ = [
    "CALENDAR_TYPES",
    "DEFAULT_LIMITS",
    "MIME_FIELDS",
    "NO_CALENDAR",
    "CalendarFindings",
    "CalendarLimits",
    "find_calendar",
    "parse_calendar",
    "wants_body",
]

CALENDAR_TYPES = frozenset(
    {"text/calendar", "application/ics", "application/x-ics", "text/x-vcalendar"}
)
CALENDAR_SUFFIXES = (".ics", ".vcs")
#: The top-level header fields :func:`find_calendar` needs (lower-case names).
MIME_FIELDS = ("content-type", "content-transfer-encoding", "content-disposition")
_NAMING = ("content-type", "content-disposition")
#: Text a file name ending in .ics/.vcs shows, or may hide (RFC 2047/2231 encoding).
_NAME_HINTS = (".ics", ".vcs", "=?", "*=", "*0")
_ADDRESS_PROPERTIES = ("ATTENDEE", "ORGANIZER")
_ADDRESS_PARAMS = ("EMAIL", "SENT-BY", "DELEGATED-TO", "DELEGATED-FROM", "MEMBER")
_UNFOLD = re.compile(r"\r\n[ \t]|\n[ \t]|\r[ \t]")
_PROPERTY_NAME = re.compile(r"[A-Za-z0-9-]+")
_MAILTO = re.compile(r"mailto:", re.I)


@dataclass(frozen=True, slots=True)
class CalendarLimits:
    """Bounds of the body read for calendars: ``max_bytes`` of calendar parts
    (as transmitted) decoded and parsed per message, and the MIME walk's
    ``max_parts`` and ``max_depth``."""

    max_bytes: int = 1024 * 1024
    max_parts: int = 256
    max_depth: int = 8


@dataclass(frozen=True, slots=True)
class CalendarFindings:
    """What a message's calendar parts show every recipient.

    ``parts`` calendar parts were found; ``addresses`` are the normalised
    addresses read from them, ``unparseable`` the address-like tokens of lines
    the parser could not read (count them as external); ``methods`` the
    upper-case METHOD values seen; ``truncated`` that something was not read.
    """

    parts: int = 0
    addresses: tuple[str, ...] = ()
    unparseable: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    truncated: bool = False


NO_CALENDAR = CalendarFindings()
DEFAULT_LIMITS = CalendarLimits()


@dataclass(slots=True)
class _Parsed:
    addresses: dict[str, None] = field(default_factory=dict)
    unparseable: dict[str, None] = field(default_factory=dict)
    methods: dict[str, None] = field(default_factory=dict)
    malformed: bool = False


def wants_body(fields: Mapping[str, str]) -> bool:
    """True if the top-level MIME ``fields`` say the body may hold a calendar:
    multipart, message/rfc822, a calendar type or an ``.ics``/``.vcs`` name.
    Everything else (most mail) is decided without looking at the body."""
    ctype = fields.get("content-type", "")
    media = media_type(ctype)
    if media.startswith("multipart/") or media == "message/rfc822" or media in CALENDAR_TYPES:
        return True
    named = (ctype + fields.get("content-disposition", "")).lower()
    return any(hint in named for hint in _NAME_HINTS)


def find_calendar(
    message: bytes, body_start: int, fields: Mapping[str, str], limits: CalendarLimits
) -> CalendarFindings:
    """The calendar data of ``message``, whose body starts at ``body_start`` and
    whose top-level MIME ``fields`` (lower-case names, see :data:`MIME_FIELDS`)
    are given; ``NO_CALENDAR`` at once when :func:`wants_body` says no."""
    if not wants_body(fields):
        return NO_CALENDAR
    walk = walk_mime(
        message, body_start, dict(fields), max_parts=limits.max_parts, max_depth=limits.max_depth
    )
    found = _Parsed(malformed=walk.overflow)
    budget = limits.max_bytes
    parts = 0
    for leaf in walk.leaves:
        if not _is_calendar(leaf):
            continue
        parts += 1
        size = leaf.end - leaf.start
        if size > budget:
            found.malformed = True
            continue
        budget -= size
        _read_leaf(message, leaf, found)
    if not parts and not found.malformed:
        return NO_CALENDAR
    return _findings(parts, found)


def _is_calendar(leaf: MimeLeaf) -> bool:
    if leaf.content_type in CALENDAR_TYPES:
        return True
    named = "".join(leaf.fields.get(name, "") for name in _NAMING).lower()
    if not any(hint in named for hint in _NAME_HINTS):
        return False  # most parts: no file name that could end in .ics
    filename = decode_encoded_words(content_fields(leaf.fields).get_filename() or "")
    return filename.strip().lower().endswith(CALENDAR_SUFFIXES)


def _read_leaf(message: bytes, leaf: MimeLeaf, found: _Parsed) -> None:
    raw = message[leaf.start : leaf.end]
    encoding = leaf.fields.get("content-transfer-encoding", "").strip().lower()
    try:
        data = _decode(raw, encoding)
    except (ValueError, binascii.Error):
        found.malformed = True
        data = raw  # still scan what is there
    charset = content_fields(leaf.fields).get_content_charset() or "utf-8"
    try:
        text = data.decode(charset, "replace")
    except LookupError:
        text = data.decode("utf-8", "replace")
    _parse_into(text, found)


def _decode(raw: bytes, encoding: str) -> bytes:
    if encoding == "base64":
        compact = re.sub(rb"[^A-Za-z0-9+/]", b"", raw)
        return base64.b64decode(compact + b"=" * (-len(compact) % 4))
    if encoding == "quoted-printable":
        return binascii.a2b_qp(raw)
    return raw


def parse_calendar(text: str) -> CalendarFindings:
    """The addresses, methods and readability of one calendar's ``text``."""
    acc = _Parsed()
    _parse_into(text, acc)
    return _findings(1, acc)


def _findings(parts: int, acc: _Parsed) -> CalendarFindings:
    return CalendarFindings(
        parts,
        tuple(acc.addresses),
        tuple(t for t in acc.unparseable if t not in acc.addresses),
        tuple(acc.methods),
        acc.malformed,
    )


def _parse_into(text: str, acc: _Parsed) -> None:
    # Imported here: it takes ~0.1 s, which mail without a calendar never pays.
    from icalendar import Calendar

    seen = 0
    try:
        calendars = Calendar.from_ical(text, multiple=True)
        for calendar in calendars:
            seen += _read_calendar(calendar, acc)
        complete = bool(calendars)
    # A third-party parser on hostile input: any failure means "not read", never a crash.
    except Exception:
        complete = False
    lines = _address_lines(text)
    if not complete or seen < len(lines):
        acc.malformed = True
        for line in lines:
            for token in address_like_tokens(line):
                acc.unparseable.setdefault(token, None)


def _read_calendar(calendar: Calendar, acc: _Parsed) -> int:
    """Collect from every component; returns how many address properties were read."""
    seen = 0
    for component in calendar.walk():
        if component.errors:
            acc.malformed = True
        if component.name == "VCALENDAR" and "METHOD" in component:
            acc.methods.setdefault(str(component["METHOD"]).strip().upper(), None)
        for name in _ADDRESS_PROPERTIES:
            for prop in _as_list(component.get(name)):
                seen += 1
                for address in _property_addresses(prop):
                    acc.addresses.setdefault(address, None)
    return seen


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _property_addresses(prop: Any) -> list[str]:
    """The addresses one ATTENDEE/ORGANIZER property shows: its ``mailto:``
    value, the address parameters and any address written in its CN."""
    values = [str(prop)]
    params = getattr(prop, "params", {})
    for key in _ADDRESS_PARAMS:
        values.extend(str(item) for item in _as_list(params.get(key)))
    addresses: list[str] = []
    for value in values:
        addresses.extend(_mailto_addresses(value))
    cn = str(params.get("CN", ""))
    if "@" in cn:
        addresses.extend(address_like_tokens(cn))
    return addresses


def _mailto_addresses(value: str) -> list[str]:
    """Addresses of a ``mailto:`` URI (RFC 6068: percent-encoded, comma-separated,
    query after ``?``) or of a bare address; nothing for other URIs."""
    value = value.strip()
    if _MAILTO.match(value):
        value = value[len("mailto:") :].partition("?")[0]
    elif ":" in value.partition("@")[0]:
        return []  # urn:uuid:…, tel:…: no address
    return address_like_tokens(unquote(value)) if "@" in value else []


def _address_lines(text: str) -> list[str]:
    """The unfolded ATTENDEE/ORGANIZER content lines of ``text``, as written."""
    lines = []
    for line in _UNFOLD.sub("", text).splitlines():
        name = _PROPERTY_NAME.match(line)
        if name and name.group().upper() in _ADDRESS_PROPERTIES:
            lines.append(line)
    return lines
