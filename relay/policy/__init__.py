"""Policy: Exposure + envelope + rules → :class:`Verdict` (pure: no I/O, no clock)."""

from relay.policy.evaluate import (
    calendar_action,
    describe,
    evaluate,
    rule_matches,
    without_recipients,
)
from relay.policy.patterns import AddressPatterns
from relay.policy.verdict import Verdict

__all__ = [
    "AddressPatterns",
    "Verdict",
    "calendar_action",
    "describe",
    "evaluate",
    "rule_matches",
    "without_recipients",
]
