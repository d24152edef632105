"""What the policy decided about one message."""

from __future__ import annotations

from dataclasses import dataclass

from relay.inspect.exposure import Exposure
from relay.settings import Action

__all__ = ["Verdict"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision: ``action`` to carry out now, the ``rule`` that matched
    (``None`` if none), a one-sentence ``reason`` a human can read, and the
    exposure it was based on (after recipient exemptions).

    In monitor mode ``action`` is ``tag`` and ``matched_action`` keeps what the
    rule would have done when enforced.  ``calendar_fallback`` is the rule's
    own rewrite or split when it was replaced by ``[policy] calendar_fallback``
    (``matched_action``) because the message shows calendar attendees.
    """

    action: Action
    rule: str | None
    reason: str
    exposure: Exposure
    matched_action: Action | None = None
    monitor: bool = False
    calendar_fallback: Action | None = None

    @property
    def is_pass(self) -> bool:
        return self.action is Action.PASS
