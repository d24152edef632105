"""Policy: Exposure + envelope + rules → :class:`Verdict` (pure: no I/O, no clock)."""

from relay.policy.verdict import Verdict

__all__ = ["Verdict"]
