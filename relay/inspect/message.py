"""Raw message → :class:`Exposure` (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.inspect.addresses import address_like_tokens, parse_address_header
from relay.inspect.calendar import (
    DEFAULT_LIMITS,
    MIME_FIELDS,
    NO_CALENDAR,
    CalendarFindings,
    CalendarLimits,
    find_calendar,
)
from relay.inspect.domains import DomainMatcher
from relay.inspect.exposure import Exposure
from relay.inspect.headers import decode_header_value
from relay.inspect.parsed import ParsedMessage, parse_message

__all__ = ["VISIBLE_HEADERS", "build_exposure", "inspect_message"]

#: Headers every recipient can read; Bcc and Resent-Bcc are deliberately absent.
VISIBLE_HEADERS = ("to", "cc", "resent-to", "resent-cc")


@dataclass(slots=True)
class _Tally:
    parsed: dict[str, str] = field(default_factory=dict)  # address -> domain
    unparseable: dict[str, None] = field(default_factory=dict)
    per_header: dict[str, dict[str, None]] = field(
        default_factory=lambda: {name: {} for name in VISIBLE_HEADERS}
    )

    def add_header(self, name: str, value: str) -> None:
        parsed = parse_address_header(value)
        seen = self.per_header[name]
        for box in parsed.mailboxes:
            self.parsed.setdefault(box.address, box.domain)
            seen.setdefault(box.address, None)
        for token in parsed.unparseable:
            self.unparseable.setdefault(token, None)
            seen.setdefault(token, None)

    def add_junk(self, text: str) -> None:
        # A line that is no field (after a bare CR/LF, a mangled name) may
        # still be shown to every recipient by some mail reader: fail closed.
        for token in address_like_tokens(text):
            self.unparseable.setdefault(token, None)


def inspect_message(
    message: ParsedMessage | bytes,
    matcher: DomainMatcher,
    *,
    max_header_bytes: int,
    calendar_limits: CalendarLimits = DEFAULT_LIMITS,
) -> Exposure:
    """Who ``message`` shows to every recipient: the header block, and the
    calendar parts of the body within ``calendar_limits`` (see
    :mod:`relay.inspect.calendar`; the body of mail that is neither multipart
    nor a calendar is never read).

    ``message`` is the :class:`ParsedMessage` every stage shares; raw bytes
    are parsed first (:func:`parse_message`: line endings normalised).

    A header block larger than ``max_header_bytes`` sets ``header_too_large``
    and only its first ``max_header_bytes`` are inspected (what is cut off is
    never counted as zero risk: the policy decides on ``header_too_large``).
    Address-like text in lines of the header block that belong to no field
    counts as unparseable (external), like any text that does not parse.
    """
    parsed = parse_message(message) if isinstance(message, bytes) else message
    too_large = parsed.header_too_large(max_header_bytes)
    tally = _Tally()
    mime: dict[str, str] = {}
    for fld in parsed.fields_within(max_header_bytes):
        if not fld.name:
            tally.add_junk(decode_header_value(fld.raw))
        elif fld.key in tally.per_header:
            tally.add_header(fld.key, decode_header_value(fld.raw_value))
        elif fld.key in MIME_FIELDS:
            mime.setdefault(fld.key, decode_header_value(fld.raw_value))
    calendar = (
        find_calendar(parsed.data, parsed.body_offset, mime, calendar_limits)
        if parsed.separator and not too_large
        else NO_CALENDAR
    )
    unparseable = [t for t in tally.unparseable if t not in tally.parsed]
    per_header = {name: tuple(seen) for name, seen in tally.per_header.items()}
    return build_exposure(
        tally.parsed,
        unparseable,
        per_header,
        matcher,
        header_too_large=too_large,
        calendar=calendar,
    )


def build_exposure(
    parsed: dict[str, str],
    unparseable: list[str],
    per_header: dict[str, tuple[str, ...]],
    matcher: DomainMatcher,
    *,
    header_too_large: bool = False,
    calendar: CalendarFindings = NO_CALENDAR,
) -> Exposure:
    """Count ``parsed`` (address → domain) and ``unparseable`` addresses, and
    the ``calendar`` attendees with them (each address once).

    Unparseable tokens always count as external, whatever their domain.
    """
    if calendar.addresses or calendar.unparseable:
        parsed, unparseable = _with_calendar(parsed, unparseable, calendar)
    verdicts: dict[str, bool] = {}
    internal: list[str] = []
    external: list[str] = []
    for address, domain in parsed.items():
        if domain not in verdicts:
            verdicts[domain] = matcher.is_internal(domain)
        (internal if verdicts[domain] else external).append(address)
    external.extend(unparseable)
    domains = {address.rpartition("@")[2] for address in external}
    cal_internal = tuple(a for a in calendar.addresses if verdicts[parsed[a]])
    cal_external = tuple(
        a
        for a in (*calendar.addresses, *calendar.unparseable)
        if a not in parsed or not verdicts[parsed[a]]
    )
    return Exposure(
        visible_total=len(internal) + len(external),
        visible_internal=len(internal),
        visible_external=len(external),
        external_domains=len(domains),
        unparseable=len(unparseable),
        per_header={name: len(addrs) for name, addrs in per_header.items()},
        header_too_large=header_too_large,
        external_addresses=tuple(external),
        internal_addresses=tuple(internal),
        unparseable_addresses=tuple(unparseable),
        header_addresses=per_header,
        calendar=calendar.parts > 0,
        calendar_truncated=calendar.truncated,
        calendar_attendees_internal=len(cal_internal),
        calendar_attendees_external=len(cal_external),
        calendar_methods=calendar.methods,
        calendar_internal_addresses=cal_internal,
        calendar_external_addresses=cal_external,
    )


def _with_calendar(
    parsed: dict[str, str], unparseable: list[str], calendar: CalendarFindings
) -> tuple[dict[str, str], list[str]]:
    """Header and calendar addresses together, each once (a copy: callers keep theirs)."""
    merged = dict(parsed)
    for address in calendar.addresses:
        merged.setdefault(address, address.rpartition("@")[2])
    tokens = dict.fromkeys(unparseable)
    tokens.update(dict.fromkeys(calendar.unparseable))
    return merged, [t for t in tokens if t not in merged]
