"""The result of inspecting a message's recipient headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Exposure"]


@dataclass(frozen=True, slots=True)
class Exposure:
    """Who a message shows to everyone who receives it.

    Counts are of unique addresses (local part as written, domain lower-cased
    and IDNA-normalised).  Unparseable address-like tokens are counted as
    external.  ``per_header`` maps a lower-case header name (``to``, ``cc``,
    ``resent-to``, ``resent-cc``) to the unique addresses found in it.
    ``external_addresses`` / ``internal_addresses`` are the normalised
    addresses themselves (needed by rewrite, split and exemptions; never log
    them).  ``unparseable_addresses`` are the external ones that came from
    unparseable text and ``header_addresses`` the unique addresses per header,
    so an exemption can recompute every count exactly.

    Calendar invitations: ``calendar`` is true when the body holds a calendar
    part; the ATTENDEE/ORGANIZER addresses it shows are visible like To/Cc
    (included, deduplicated, in ``visible_*`` and ``external_domains``) and
    also counted apart in ``calendar_attendees_internal`` / ``_external``
    (``calendar_internal_addresses`` / ``calendar_external_addresses``).
    ``calendar_truncated`` means some calendar data could not be read (over
    the byte cap or the MIME bounds, or malformed): there may be more.
    ``calendar_methods`` are the METHOD values seen (``REQUEST``, ...).
    """

    visible_total: int = 0
    visible_internal: int = 0
    visible_external: int = 0
    external_domains: int = 0
    unparseable: int = 0
    per_header: Mapping[str, int] = field(default_factory=dict)
    header_too_large: bool = False
    external_addresses: tuple[str, ...] = ()
    internal_addresses: tuple[str, ...] = ()
    unparseable_addresses: tuple[str, ...] = ()
    header_addresses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    calendar: bool = False
    calendar_truncated: bool = False
    calendar_attendees_internal: int = 0
    calendar_attendees_external: int = 0
    calendar_methods: tuple[str, ...] = ()
    calendar_internal_addresses: tuple[str, ...] = ()
    calendar_external_addresses: tuple[str, ...] = ()

    def counts(self) -> dict[str, Any]:
        """The counts only (no addresses): safe for logs, tags and JSON."""
        return {
            "visible_total": self.visible_total,
            "visible_internal": self.visible_internal,
            "visible_external": self.visible_external,
            "external_domains": self.external_domains,
            "unparseable": self.unparseable,
            "per_header": dict(self.per_header),
            "header_too_large": self.header_too_large,
            "calendar": self.calendar_counts(),
        }

    def calendar_counts(self) -> dict[str, Any]:
        """The calendar part of :meth:`counts` (no addresses)."""
        return {
            "invitation": self.calendar,
            "attendees_internal": self.calendar_attendees_internal,
            "attendees_external": self.calendar_attendees_external,
            "truncated": self.calendar_truncated,
            "methods": list(self.calendar_methods),
        }
