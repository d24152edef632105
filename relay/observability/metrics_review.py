"""Sender self-service metric family (a mixin of :class:`~relay.observability.metrics.Metrics`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = ["SELF_SERVICE_ACTIONS", "SelfServiceMetrics"]

#: ``action`` label values of ``ccguard_self_service_total``.
SELF_SERVICE_ACTIONS = (
    "opened",  # a sender opened a valid link
    "hidden",  # released by the sender with recipients hidden
    "split",  # released by the sender as one copy per recipient
    "withdraw",  # deleted by the sender
    "send_now",  # an undo hold released as written by the sender
    "request",  # a release request made
    "approve",  # one reviewer's approval recorded
    "approved",  # a request fully approved and the message delivered as sent
    "deny",  # a request denied
    "delay_delivered",  # an undo hold ran out and the message was delivered
    "refused",  # a forged, expired or used link refused
    "throttled",  # a client refused for too many bad links
    "failed",  # a step that could not be completed (upstream, store)
)


class SelfServiceMetrics:
    """``ccguard_self_service_total{action}``: every step of sender self-service."""

    registry: CollectorRegistry

    def _self_service(self) -> None:
        self.self_service_steps = Counter(
            "ccguard_self_service",
            "Sender self-service steps: links opened, sender decisions, release requests "
            "and their approvals/denials, undo holds delivered, links refused.",
            ["action"],
            registry=self.registry,
        )
        for action in SELF_SERVICE_ACTIONS:
            self.self_service_steps.labels(action=action)

    def self_service(self, action: str) -> None:
        """Count one self-service step (``action`` from :data:`SELF_SERVICE_ACTIONS`)."""
        if action in SELF_SERVICE_ACTIONS:
            self.self_service_steps.labels(action=action).inc()
