"""Inspection: message headers (and calendar parts) → :class:`Exposure` (pure: no I/O, no clock)."""

from relay.inspect.addresses import (
    Mailbox,
    ParsedHeader,
    normalise_address,
    parse_address_header,
)
from relay.inspect.calendar import CalendarFindings, CalendarLimits
from relay.inspect.domains import DomainMatcher, normalise_domain
from relay.inspect.exposure import Exposure
from relay.inspect.headers import split_header_block
from relay.inspect.message import VISIBLE_HEADERS, build_exposure, inspect_message
from relay.inspect.parsed import HeaderField, ParsedMessage, normalise_line_endings, parse_message

__all__ = [
    "VISIBLE_HEADERS",
    "CalendarFindings",
    "CalendarLimits",
    "DomainMatcher",
    "Exposure",
    "HeaderField",
    "Mailbox",
    "ParsedHeader",
    "ParsedMessage",
    "build_exposure",
    "inspect_message",
    "normalise_address",
    "normalise_domain",
    "normalise_line_endings",
    "parse_address_header",
    "parse_message",
    "split_header_block",
]
