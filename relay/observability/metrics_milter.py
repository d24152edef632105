"""Milter front metric families: connections from the MTA, replies, protocol errors.

:class:`MilterMetrics` is a mixin of :class:`~relay.observability.metrics.Metrics`;
it creates its families in the registry ``Metrics`` owns.  Messages the milter
inspects are counted in ``ccguard_messages_total`` with ``front="milter"``.
Label values come from the tuples below only.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["FRONTS", "MILTER_ERRORS", "MILTER_REPLIES", "MilterMetrics"]

#: ``front`` label of ``ccguard_messages_total``: who handed ccguard the message.
FRONTS = ("smtp", "milter")
#: What the milter told the MTA at end of message.
MILTER_REPLIES = ("continue", "discard", "reject", "tempfail")
#: Why a milter connection was dropped without an answer (``peer``: not in
#: ``[milter] allowed_peers``).
MILTER_ERRORS = ("protocol", "too_large", "idle_timeout", "peer", "internal")


class MilterMetrics:
    """The milter front's families (mixed into ``Metrics``)."""

    registry: CollectorRegistry

    def _milter(self) -> None:
        reg = self.registry
        self.milter_connections = Gauge(
            "ccguard_milter_connections",
            "Milter connections from the MTA open now.",
            registry=reg,
        )
        self.milter_replies = Counter(
            "ccguard_milter_replies",
            "End-of-message answers to the MTA: continue (with header edits), discard "
            "(held or split: delivered by ccguard), reject (5xx), tempfail (4xx).",
            ["reply"],
            registry=reg,
        )
        for reply in MILTER_REPLIES:
            self.milter_replies.labels(reply=reply)
        self.milter_errors = Counter(
            "ccguard_milter_errors",
            "Milter connections closed on an error (the MTA applies milter_default_action).",
            ["kind"],
            registry=reg,
        )
        for kind in MILTER_ERRORS:
            self.milter_errors.labels(kind=kind)

    def milter_reply(self, reply: str) -> None:
        """Count one end-of-message answer (a value of ``MILTER_REPLIES``)."""
        self.milter_replies.labels(reply=reply).inc()

    def milter_error(self, kind: str) -> None:
        """Count one connection dropped on an error (a value of ``MILTER_ERRORS``)."""
        self.milter_errors.labels(kind=kind if kind in MILTER_ERRORS else "internal").inc()

    def milter_connection(self, delta: int) -> None:
        """A milter connection opened (+1) or closed (-1)."""
        self.milter_connections.inc(delta)
