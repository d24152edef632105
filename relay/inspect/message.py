"""Raw message → :class:`Exposure` (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

from relay.inspect.addresses import address_like_tokens, parse_address_header
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
    message: ParsedMessage | bytes, matcher: DomainMatcher, *, max_header_bytes: int
) -> Exposure:
    """Who ``message`` shows to every recipient; reads only the header block.

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
    for fld in parsed.fields_within(max_header_bytes):
        if not fld.name:
            tally.add_junk(decode_header_value(fld.raw))
        elif fld.key in tally.per_header:
            tally.add_header(fld.key, decode_header_value(fld.raw_value))
    unparseable = [t for t in tally.unparseable if t not in tally.parsed]
    per_header = {name: tuple(seen) for name, seen in tally.per_header.items()}
    return build_exposure(
        tally.parsed, unparseable, per_header, matcher, header_too_large=too_large
    )


def build_exposure(
    parsed: dict[str, str],
    unparseable: list[str],
    per_header: dict[str, tuple[str, ...]],
    matcher: DomainMatcher,
    *,
    header_too_large: bool = False,
) -> Exposure:
    """Count ``parsed`` (address → domain) and ``unparseable`` addresses.

    Unparseable tokens always count as external, whatever their domain.
    """
    verdicts: dict[str, bool] = {}
    internal: list[str] = []
    external: list[str] = []
    for address, domain in parsed.items():
        if domain not in verdicts:
            verdicts[domain] = matcher.is_internal(domain)
        (internal if verdicts[domain] else external).append(address)
    external.extend(unparseable)
    domains = {address.rpartition("@")[2] for address in external}
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
    )
