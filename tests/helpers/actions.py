"""Shared pieces for the actions tests: matcher, verdicts, header comparison."""

from __future__ import annotations

from relay.inspect import DomainMatcher, Exposure, inspect_message
from relay.inspect.headers import iter_fields, split_header_block
from relay.policy.verdict import Verdict
from relay.settings import Action

__all__ = [
    "MATCHER",
    "exposure_of",
    "field_list",
    "make_verdict",
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
    """(lower-case name, raw value bytes) of each header field, in order
    (relay.inspect's own splitter, independent of relay.actions.headers)."""
    head, _ = split_header_block(message)
    return list(iter_fields(head))


def exposure_of(message: bytes) -> Exposure:
    """What relay.inspect sees in ``message``."""
    return inspect_message(message, MATCHER, max_header_bytes=1 << 20)
