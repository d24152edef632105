"""Prometheus metrics of one ccguard process, in a registry of their own.

Every metric lives in the :class:`Metrics` instance's own
:class:`~prometheus_client.CollectorRegistry` (no module globals), so tests and
embedded uses can create as many as they like.  Names follow Prometheus
conventions: ``ccguard_`` prefix, base units (seconds, bytes), ``_total``
counters, and no label ever carries an address or another unbounded value.

Label values that alerts depend on are created at start-up with value 0, so
``rate()`` and ``increase()`` work from the first scrape instead of only after
the first failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric

from relay import __version__
from relay.observability.children import Children
from relay.observability.metrics_admin import (
    ADMIN_REFUSAL_REASONS,
    BULK_ACTIONS,
    BULK_RESULTS,
    REPORT_FORMATS,
    AdminMetrics,
)
from relay.observability.metrics_front import (
    AUTH_MECHANISMS,
    AUTH_RESULTS,
    DISCONNECT_REASONS,
    HANGUP_STAGES,
    INFLIGHT_STAGES,
    PROXY_FAILURES,
    REFUSAL_REASONS,
    SMTP_STAGES,
    TLS_FAILURES,
    TLS_VERSIONS,
    FrontDoorMetrics,
    code_class,
)
from relay.observability.metrics_milter import FRONTS, MilterMetrics
from relay.observability.metrics_review import SelfServiceMetrics
from relay.observability.metrics_throughput import ThroughputMetrics

if TYPE_CHECKING:
    from relay.policy.verdict import Verdict

__all__ = [
    "ACTIONS",
    "ADMIN_REFUSAL_REASONS",
    "AUTH_MECHANISMS",
    "AUTH_RESULTS",
    "BULK_ACTIONS",
    "BULK_RESULTS",
    "COUNT_BUCKETS",
    "DISCONNECT_REASONS",
    "HANGUP_STAGES",
    "INFLIGHT_STAGES",
    "NOTIFICATION_RESULTS",
    "NO_RULE",
    "POLICY_MODES",
    "PROXY_FAILURES",
    "REFUSAL_REASONS",
    "REPORT_FORMATS",
    "SMTP_STAGES",
    "TLS_FAILURES",
    "TLS_VERSIONS",
    "UPSTREAM_ERROR_KINDS",
    "UPSTREAM_OUTCOMES",
    "Metrics",
    "code_class",
]

#: ``rule`` label value of messages no rule matched.
NO_RULE = "none"
ACTIONS = ("pass", "tag", "rewrite", "split", "reject", "quarantine")
UPSTREAM_ERROR_KINDS = ("refused", "timeout", "disconnect", "4xx", "5xx", "tls", "auth")
UPSTREAM_OUTCOMES = ("accepted", "refused", "error")
NOTIFICATION_RESULTS = ("sent", "failed")
POLICY_MODES = ("enforce", "monitor")
QUARANTINE_STATUSES = ("held",)
#: PostgreSQL pool: connections open, of which idle; requests waiting for one.
STORE_POOL_STATES = ("open", "idle", "waiting")
#: Actions a calendar fallback replaces, and what it may become.
CALENDAR_REPLACED = ("rewrite", "split")
CALENDAR_FALLBACKS = ("quarantine", "reject", "tag")
#: Cross-process claims: what they guard, and what happened to one.
#: taken: a claim won (taken_over: of those, one whose holder's lease had expired);
#: split retries wait (wait_timed_out: waited claim_wait, answered 451), releases do not
#: (refused: 409, another release is under way); lost: found taken over while working.
CLAIM_KIND_EVENTS = {
    "split": ("taken", "taken_over", "wait_timed_out", "lost"),
    "release": ("taken", "taken_over", "refused", "lost"),
}
CLAIM_KINDS = tuple(CLAIM_KIND_EVENTS)
CLAIM_EVENTS = tuple(dict.fromkeys(e for events in CLAIM_KIND_EVENTS.values() for e in events))

#: Per-message counts (recipients, domains): 0 up to a 5000-recipient blast.
COUNT_BUCKETS = (0, 1, 2, 5, 10, 15, 25, 50, 100, 250, 500, 1000, 5000)
SIZE_BUCKETS = (1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 10485760, 26214400, 52428800)
INSPECTION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class _WithoutCreated:
    """A view of a registry without the ``*_created`` timestamp series.

    They double the series count and no dashboard or alert uses them; filtering
    here avoids prometheus_client's process-wide switch.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            metric.samples = [s for s in metric.samples if not s.name.endswith("_created")]
            yield metric


class Metrics(AdminMetrics, FrontDoorMetrics, MilterMetrics, SelfServiceMetrics, ThroughputMetrics):
    """All ccguard metrics; attributes are the prometheus_client objects.

    ``version`` goes into ``ccguard_build_info`` and ``mode`` (``enforce`` or
    ``monitor``) into ``ccguard_policy_mode``.  Use the helper methods where
    there is one; they keep label values inside the documented sets.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        version: str = __version__,
        mode: str = "enforce",
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        #: Directory of the worker processes' metric files, when /metrics sums them.
        self.multiprocess_dir: str | None = None
        self._traffic()
        self._front_door()
        self._milter()
        self._tls_auth()
        self._exposure()
        self._upstream()
        self._throughput()
        self._quarantine()
        self._inflight()
        self._admin()
        self._self_service()
        self._info(version)
        self.set_policy_mode(mode)

    def _traffic(self) -> None:
        reg = self.registry
        self.messages = Counter(
            "ccguard_messages",
            "Messages by the action taken, the rule that matched "
            f'(rule="{NO_RULE}" when none did) and the front that received them '
            '(front="smtp" or "milter").',
            ["action", "rule", "front"],
            registry=reg,
        )
        self._messages = Children(self.messages)
        for front in FRONTS:
            self._messages("pass", NO_RULE, front)
        self._smtp_sessions()
        self.line_endings_normalised = Counter(
            "ccguard_messages_line_endings_normalised",
            "Messages received with bare CR or bare LF line endings, normalised to CRLF "
            "before inspection.",
            registry=reg,
        )

    def _exposure(self) -> None:
        reg = self.registry
        self.visible_external = Histogram(
            "ccguard_visible_external_recipients",
            "Visible external recipient addresses per message.",
            buckets=COUNT_BUCKETS,
            registry=reg,
        )
        self.external_domains = Histogram(
            "ccguard_external_domains",
            "Distinct visible external domains per message.",
            buckets=COUNT_BUCKETS,
            registry=reg,
        )
        self.message_size = Histogram(
            "ccguard_message_size_bytes",
            "Size of received messages in bytes.",
            buckets=SIZE_BUCKETS,
            registry=reg,
        )
        self.inspection_duration = Histogram(
            "ccguard_inspection_duration_seconds",
            "Time to inspect a message's headers.",
            buckets=INSPECTION_BUCKETS,
            registry=reg,
        )
        self.calendar_messages = Counter(
            "ccguard_calendar_messages",
            'Messages carrying calendar data; truncated="true" when some of it '
            "was not read (over [inspect] max_calendar_bytes, the MIME bounds, or malformed).",
            ["truncated"],
            registry=reg,
        )
        for flag in ("true", "false"):
            self.calendar_messages.labels(truncated=flag)
        self.calendar_fallbacks = Counter(
            "ccguard_calendar_fallbacks",
            "Rewrite/split rules replaced by [policy] calendar_fallback because the message "
            "shows calendar attendees (counted in monitor mode too: what enforcing would do).",
            ["replaced", "action"],
            registry=reg,
        )
        for replaced in CALENDAR_REPLACED:
            for action in CALENDAR_FALLBACKS:
                self.calendar_fallbacks.labels(replaced=replaced, action=action)

    def _upstream(self) -> None:
        reg = self.registry
        self.upstream_duration = Histogram(
            "ccguard_upstream_duration_seconds",
            "Time to hand a message to the upstream server, by outcome.",
            ["outcome"],
            buckets=UPSTREAM_BUCKETS,
            registry=reg,
        )
        self._upstream_durations = Children(self.upstream_duration)
        for outcome in UPSTREAM_OUTCOMES:
            self._upstream_durations(outcome)
        self.upstream_errors = Counter(
            "ccguard_upstream_errors",
            "Failed upstream deliveries by kind of failure.",
            ["kind"],
            registry=reg,
        )
        self._upstream_errors = Children(self.upstream_errors)
        for kind in UPSTREAM_ERROR_KINDS:
            self._upstream_errors(kind)

    def _quarantine(self) -> None:
        reg = self.registry
        self.quarantine_messages = Gauge(
            "ccguard_quarantine_messages",
            "Messages in the quarantine by status.",
            ["status"],
            registry=reg,
        )
        for status in QUARANTINE_STATUSES:
            self.quarantine_messages.labels(status=status)
        self._quarantine_statuses: set[str] = set(QUARANTINE_STATUSES)
        self.quarantine_oldest_held = Gauge(
            "ccguard_quarantine_oldest_held_seconds",
            "Age of the oldest message still held in the quarantine (0 when none).",
            registry=reg,
        )
        self.store_errors = Counter(
            "ccguard_store_errors",
            "Quarantine / ledger store operations that failed.",
            registry=reg,
        )
        self.store_pool = Gauge(
            "ccguard_store_pool_connections",
            "PostgreSQL store pool: connections open, idle, and requests waiting (0 on SQLite).",
            ["state"],
            registry=reg,
        )
        for state in STORE_POOL_STATES:
            self.store_pool.labels(state=state)
        self.notifications = Counter(
            "ccguard_notifications",
            "Notices sent to senders, by result.",
            ["result"],
            registry=reg,
        )
        for result in NOTIFICATION_RESULTS:
            self.notifications.labels(result=result)
        self.claim_events = Counter(
            "ccguard_claim_events",
            "Claims (split attempts, releases) taken, taken over after their holder's lease "
            "expired, waits for a claim that timed out (451), releases refused (409) "
            "because another is under way, claims lost while working.",
            ["kind", "event"],
            registry=reg,
        )
        for kind, events in CLAIM_KIND_EVENTS.items():
            for event in events:
                self.claim_events.labels(kind=kind, event=event)

    def _info(self, version: str) -> None:
        reg = self.registry
        self.build_info = Gauge(
            "ccguard_build_info",
            "Always 1; the version label says which ccguard runs.",
            ["version"],
            registry=reg,
        )
        self.build_info.labels(version=version).set(1)
        self.policy_mode = Gauge(
            "ccguard_policy_mode",
            "1 for the policy mode in force, 0 for the others.",
            ["mode"],
            registry=reg,
        )

    # -- helpers the SMTP path calls -------------------------------------------------

    def set_policy_mode(self, mode: str) -> None:
        """Mark ``mode`` as the one in force (1) and every other known mode 0."""
        for known in {*POLICY_MODES, mode}:
            self.policy_mode.labels(mode=known).set(1 if known == mode else 0)

    def declare_rules(self, rules: Iterable[tuple[str, str]]) -> None:
        """Create the ``(action, rule)`` series of the configured rules at 0.

        Pass ``(rule.action, rule.name)`` for every rule, plus ``("tag", name)``
        in monitor mode, so alerts on a rise in rejections see a zero baseline.
        """
        for action, rule in rules:
            for front in FRONTS:
                self._messages(str(action), rule, front)

    def observe_message(
        self, verdict: Verdict, size: int, inspect_seconds: float, front: str = "smtp"
    ) -> None:
        """Count one message by its verdict and ``front`` (``smtp`` or ``milter``);
        record exposure, size and inspection time."""
        rule = verdict.rule or NO_RULE
        self._messages(str(verdict.action), rule, front).inc()
        self.visible_external.observe(verdict.exposure.visible_external)
        self.external_domains.observe(verdict.exposure.external_domains)
        self.message_size.observe(size)
        self.inspection_duration.observe(inspect_seconds)
        exposure = verdict.exposure
        if exposure.calendar or exposure.calendar_truncated:
            self.calendar_messages.labels(truncated=str(exposure.calendar_truncated).lower()).inc()
        if verdict.calendar_fallback is not None:
            instead = verdict.matched_action or verdict.action
            self.calendar_fallbacks.labels(
                replaced=str(verdict.calendar_fallback), action=str(instead)
            ).inc()

    def line_endings_normalised_message(self) -> None:
        """One message arrived with bare CR/LF and was normalised to CRLF."""
        self.line_endings_normalised.inc()

    def observe_upstream(self, outcome: str, seconds: float, error_kind: str | None = None) -> None:
        """Record one upstream delivery attempt (``accepted``, ``refused`` or ``error``)
        and, for a failure, count it under ``error_kind`` (refused, timeout, ...)."""
        self._upstream_durations(outcome).observe(seconds)
        if error_kind is not None:
            self._upstream_errors(error_kind).inc()

    def store_error(self) -> None:
        """Count one failed store operation."""
        self.store_errors.inc()

    def claim_event(self, kind: str, event: str) -> None:
        """Count one claim event (a kind and one of its events in CLAIM_KIND_EVENTS;
        others are ignored)."""
        if event in CLAIM_KIND_EVENTS.get(kind, ()):
            self.claim_events.labels(kind=kind, event=event).inc()

    def notification(self, result: str) -> None:
        """Count one sender notice: ``sent`` or ``failed``."""
        self.notifications.labels(result=result).inc()

    def set_quarantine(self, counts: Mapping[str, int], oldest_held_age: float | None) -> None:
        """Set the quarantine gauges from the store's counts by status.

        A status seen before but missing from ``counts`` drops to 0;
        ``oldest_held_age`` is in seconds, ``None`` when nothing is held.
        """
        self._quarantine_statuses.update(counts)
        for status in self._quarantine_statuses:
            self.quarantine_messages.labels(status=status).set(counts.get(status, 0))
        self.quarantine_oldest_held.set(max(oldest_held_age or 0.0, 0.0))

    def set_store_pool(self, stats: Mapping[str, int]) -> None:
        """Set the pool gauges from psycopg_pool's ``get_stats()``."""
        self.store_pool.labels(state="open").set(stats.get("pool_size", 0))
        self.store_pool.labels(state="idle").set(stats.get("pool_available", 0))
        self.store_pool.labels(state="waiting").set(stats.get("requests_waiting", 0))

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition (format 0.0.4) and its content type; with
        :attr:`multiprocess_dir` set, summed over the workers (``multiprocess``)."""
        if self.multiprocess_dir is not None:
            from relay.observability import multiprocess

            return multiprocess.render(self.multiprocess_dir)
        return generate_latest(_WithoutCreated(self.registry)), CONTENT_TYPE_PLAIN_0_0_4
