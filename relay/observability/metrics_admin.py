"""Admin web/API metric families (a mixin of :class:`~relay.observability.metrics.Metrics`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

__all__ = [
    "ADMIN_REFUSAL_REASONS",
    "BULK_ACTIONS",
    "BULK_RESULTS",
    "REPORT_FORMATS",
    "AdminMetrics",
]

ADMIN_REFUSAL_REASONS = ("too_large", "too_deep", "cross_site")
#: Bulk decisions (relay/admin/bulk.py): the action and what happened to each message.
BULK_ACTIONS = ("release-hidden", "delete")
BULK_RESULTS = (
    "released", "deleted", "deferred", "upstream_failed", "conflict", "not_found", "refused",
    "store_failed",
)  # fmt: skip
REPORT_FORMATS = ("pdf", "html", "json")


class AdminMetrics:
    """Refused admin requests, bulk decisions and evidence reports."""

    registry: CollectorRegistry

    def _admin(self) -> None:
        self.admin_refused_requests = Counter(
            "ccguard_admin_requests_refused",
            "Admin web/API requests refused before any work: body too large, "
            "JSON nested too deep, or sent by another site.",
            ["reason"],
            registry=self.registry,
        )
        for reason in ADMIN_REFUSAL_REASONS:
            self.admin_refused_requests.labels(reason=reason)
        self.bulk_messages = Counter(
            "ccguard_admin_bulk_messages",
            "Messages decided by bulk requests of the admin web UI and API, by action "
            "(release-hidden, delete) and what happened to each (released, deleted, "
            "upstream_failed, conflict, ...).",
            ["action", "result"],
            registry=self.registry,
        )
        self.admin_reports = Counter(
            "ccguard_admin_reports",
            "Evidence reports downloaded from the overview page, by format.",
            ["format"],
            registry=self.registry,
        )
        for fmt in REPORT_FORMATS:
            self.admin_reports.labels(format=fmt)

    def admin_refused(self, reason: str) -> None:
        """Count one refused admin request; ``reason`` is one of ADMIN_REFUSAL_REASONS."""
        if reason in ADMIN_REFUSAL_REASONS:
            self.admin_refused_requests.labels(reason=reason).inc()

    def bulk_message(self, action: str, result: str) -> None:
        """Count one message of a bulk decision (values outside BULK_* are ignored)."""
        if action in BULK_ACTIONS and result in BULK_RESULTS:
            self.bulk_messages.labels(action=action, result=result).inc()

    def report_made(self, fmt: str) -> None:
        """Count one evidence report downloaded (``fmt`` one of REPORT_FORMATS)."""
        if fmt in REPORT_FORMATS:
            self.admin_reports.labels(format=fmt).inc()
