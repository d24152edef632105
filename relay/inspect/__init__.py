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

__all__ = [
    "VISIBLE_HEADERS",
    "CalendarFindings",
    "CalendarLimits",
    "DomainMatcher",
    "Exposure",
    "Mailbox",
    "ParsedHeader",
    "build_exposure",
    "inspect_message",
    "normalise_address",
    "normalise_domain",
    "parse_address_header",
    "split_header_block",
]
