"""The process-wide budget of message bytes in flight (``[limits] max_inflight_bytes``).

Every transaction holds a :class:`Reservation` from MAIL until its message is
finished (or the transaction ends without one).  A transaction whose announced
``SIZE=`` or whose DATA so far would take the sum over the budget is refused
with ``452 4.3.1`` instead, so a burst of large messages makes clients retry
later rather than making the process run out of memory.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["BudgetMetrics", "InflightBudget", "Reservation"]


class BudgetMetrics(Protocol):
    """What the budget reports (implemented by :class:`relay.observability.Metrics`)."""

    def set_inflight_bytes(self, value: int) -> None: ...

    def inflight_refused(self, stage: str) -> None: ...


class InflightBudget:
    """At most ``limit`` bytes reserved at once, summed over all transactions."""

    def __init__(self, limit: int, metrics: BudgetMetrics | None = None) -> None:
        self.limit = limit
        self.in_use = 0
        self._metrics = metrics

    def reservation(self) -> Reservation:
        """A new, empty reservation against this budget."""
        return Reservation(self)

    def refused(self, stage: str) -> None:
        """Count a transaction refused for want of budget at ``stage`` (mail / data)."""
        if self._metrics is not None:
            self._metrics.inflight_refused(stage)

    def _take(self, amount: int) -> bool:
        if self.in_use + amount > self.limit:
            return False
        self._set(self.in_use + amount)
        return True

    def _give(self, amount: int) -> None:
        self._set(self.in_use - amount)

    def _set(self, value: int) -> None:
        self.in_use = value
        if self._metrics is not None:
            self._metrics.set_inflight_bytes(value)


class Reservation:
    """The bytes one transaction holds; grows with its message, released once."""

    __slots__ = ("_budget", "held")

    def __init__(self, budget: InflightBudget) -> None:
        self._budget: InflightBudget | None = budget
        self.held = 0

    def grow_to(self, size: int) -> bool:
        """Hold at least ``size`` bytes; False (holding what it held) if over budget."""
        if size <= self.held:
            return True
        if self._budget is None or not self._budget._take(size - self.held):
            return False
        self.held = size
        return True

    def release(self) -> None:
        """Give everything back; later calls (and :meth:`grow_to`) do nothing more."""
        budget, self._budget = self._budget, None
        if budget is not None and self.held:
            budget._give(self.held)
        self.held = 0
