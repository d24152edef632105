"""The throughput metrics (issue 13): upstream pool churn and worker restarts.

A mixin of :class:`relay.observability.metrics.Metrics`, like
:mod:`relay.observability.metrics_front`: it creates its families in the
registry ``Metrics`` owns.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["ThroughputMetrics"]


class ThroughputMetrics:
    """New upstream connections and restarted worker processes."""

    registry: CollectorRegistry

    def _throughput(self) -> None:
        reg = self.registry
        self.upstream_connections_opened = Counter(
            "ccguard_upstream_connections_opened",
            "New connections to the upstream (connect + EHLO); a rate near the message "
            "rate means the pool is too small for the load.",
            registry=reg,
        )
        self.worker_restarts = Counter(
            "ccguard_worker_restarts",
            "Worker processes ([smtp] workers) that died and were started again.",
            registry=reg,
        )

    def upstream_connection_opened(self) -> None:
        """Count one new upstream connection (pool churn)."""
        self.upstream_connections_opened.inc()

    def worker_restarted(self) -> None:
        """Count one worker process that died and was started again (supervisor)."""
        self.worker_restarts.inc()
