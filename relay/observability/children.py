"""Labelled metric children looked up by a dict instead of ``family.labels(...)``.

prometheus-client's ``labels(stage=..., code_class=...)`` checks the label
names, converts every value with ``str()`` and takes the family's lock on every
call: about 1 µs, several times per relayed message.  Every label value ccguard
uses comes from a bounded set (the tuples in the ``metrics*`` modules), so the
children are kept in a dict by their label values, filled on first use; a child
is the same object ``labels()`` returns, so what ``/metrics`` shows is the same.
Measured in docs/throughput.md ("The hot path").
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client.metrics import MetricWrapperBase

__all__ = ["Children"]

M = TypeVar("M", bound=MetricWrapperBase)


class Children(Generic[M]):
    """The children of one labelled ``family`` by label values, in label-name order."""

    __slots__ = ("_by_values", "_family")

    def __init__(self, family: M) -> None:
        self._family = family
        self._by_values: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        """The child for ``values`` (strings, in the order of the family's label names)."""
        child = self._by_values.get(values)
        if child is None:
            # Racing threads both land here at worst: labels() returns the one child.
            child = self._by_values[values] = self._family.labels(*values)
        return child
