"""Shared pieces for the actions tests: matcher, verdicts, header comparison."""

from __future__ import annotations

from relay.inspect import DomainMatcher, Exposure, ParsedMessage, inspect_message, parse_message
from relay.policy.verdict import Verdict
from relay.settings import Action

__all__ = [
    "MATCHER",
    "exposure_of",
    "field_list",
    "make_verdict",
    "parsed",
]

MATCHER = DomainMatcher(["example.org", "*.example.org"])


def make_verdict(
    action: Action,
    *,
    rule: str | None = "bulk-external",
    external: int = 312,
    domains: int = 41,
    total: int = 320,
    unparseable: int = 0,
    monitor: bool = False,
    matched: Action | None = None,
) -> Verdict:
    """A verdict with the given counts (no addresses needed by the actions)."""
    exposure = Exposure(
        visible_total=total,
        visible_internal=total - external,
        visible_external=external,
        external_domains=domains,
        unparseable=unparseable,
    )
    return Verdict(action, rule, "test", exposure, matched_action=matched, monitor=monitor)


def field_list(message: bytes) -> list[tuple[str, bytes]]:
    """(lower-case name, raw value bytes) of each header field, in order,
    as relay.inspect's one parser cuts them (lines of no field skipped)."""
    return [(f.key, f.raw_value) for f in parse_message(message).fields if f.name]


def parsed(message: bytes) -> ParsedMessage:
    """``message`` as the SMTP front hands it on (line endings normalised)."""
    return parse_message(message)


def exposure_of(message: bytes) -> Exposure:
    """What relay.inspect sees in ``message``."""
    return inspect_message(message, MATCHER, max_header_bytes=1 << 20)
