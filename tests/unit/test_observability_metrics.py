"""What an SRE sees on /metrics: names, types, labels and exact values."""

from __future__ import annotations

import pytest

from relay.inspect.exposure import Exposure
from relay.observability.metrics import (
    COUNT_BUCKETS,
    DISCONNECT_REASONS,
    NO_RULE,
    PROXY_FAILURES,
    REFUSAL_REASONS,
    SMTP_STAGES,
    UPSTREAM_ERROR_KINDS,
    Metrics,
    code_class,
)
from relay.observability.metrics_front import LOG_SUPPRESSED_EVENTS
from relay.policy.verdict import Verdict
from relay.settings import Action
from relay.smtp.pipeline import SmtpMetrics
from relay.upstream.client import UpstreamMetrics
from tests.helpers.observability import parse_metrics

EXPECTED_TYPES = {
    "ccguard_messages_total": "counter",
    "ccguard_smtp_replies_total": "counter",
    "ccguard_smtp_sessions_active": "gauge",
    "ccguard_smtp_client_hangups_total": "counter",
    "ccguard_messages_line_endings_normalised_total": "counter",
    "ccguard_smtp_connections_refused_total": "counter",
    "ccguard_smtp_clients_disconnected_total": "counter",
    "ccguard_smtp_rate_limited_messages_total": "counter",
    "ccguard_smtp_proxy_header_failures_total": "counter",
    "ccguard_worker_accepts_overdue_total": "counter",
    "ccguard_log_lines_suppressed_total": "counter",
    "ccguard_visible_external_recipients": "histogram",
    "ccguard_external_domains": "histogram",
    "ccguard_message_size_bytes": "histogram",
    "ccguard_inspection_duration_seconds": "histogram",
    "ccguard_calendar_messages_total": "counter",
    "ccguard_calendar_fallbacks_total": "counter",
    "ccguard_upstream_duration_seconds": "histogram",
    "ccguard_upstream_errors_total": "counter",
    "ccguard_quarantine_messages": "gauge",
    "ccguard_quarantine_oldest_held_seconds": "gauge",
    "ccguard_store_errors_total": "counter",
    "ccguard_store_pool_connections": "gauge",
    "ccguard_notifications_total": "counter",
    "ccguard_inflight_bytes": "gauge",
    "ccguard_inflight_limit_bytes": "gauge",
    "ccguard_inflight_refusals_total": "counter",
    "ccguard_claim_events_total": "counter",
    "ccguard_admin_requests_refused_total": "counter",
    "ccguard_admin_bulk_messages_total": "counter",
    "ccguard_self_service_total": "counter",
    "ccguard_admin_reports_total": "counter",
    "ccguard_build_info": "gauge",
    "ccguard_policy_mode": "gauge",
    "ccguard_smtp_tls_sessions_total": "counter",
    "ccguard_smtp_tls_handshake_failures_total": "counter",
    "ccguard_smtp_auth_attempts_total": "counter",
    "ccguard_upstream_connections_opened_total": "counter",
    "ccguard_worker_restarts_total": "counter",
    "ccguard_milter_connections": "gauge",
    "ccguard_milter_replies_total": "counter",
    "ccguard_milter_errors_total": "counter",
}
ALLOWED_LABELS = {"action", "rule", "stage", "code_class", "outcome", "kind", "status", "result",
                  "version", "mode", "le", "truncated", "replaced", "reason",
                  "mechanism", "state", "event", "front", "reply", "format"}  # fmt: skip


def test_exposes_exactly_the_documented_metrics_with_their_types() -> None:
    body, content_type = Metrics(version="9.9.9", mode="enforce").render()
    assert content_type.startswith("text/plain; version=0.0.4")
    scrape = parse_metrics(body)
    assert scrape.types == EXPECTED_TYPES
    assert scrape.label_names() <= ALLOWED_LABELS
    assert not any(name.endswith("_created") for name, _ in scrape.samples)


def test_alerting_label_values_exist_at_zero_before_anything_happens() -> None:
    scrape = parse_metrics(Metrics(version="1", mode="enforce").render()[0])
    for kind in UPSTREAM_ERROR_KINDS:
        assert scrape.value("ccguard_upstream_errors_total", kind=kind) == 0
    for stage in SMTP_STAGES:
        for cls in ("2xx", "4xx", "5xx"):
            assert scrape.value("ccguard_smtp_replies_total", stage=stage, code_class=cls) == 0
    assert scrape.value("ccguard_messages_total", action="pass", rule=NO_RULE, front="smtp") == 0
    for mechanism in ("PLAIN", "LOGIN"):
        value = scrape.value(
            "ccguard_smtp_auth_attempts_total", mechanism=mechanism, result="failure"
        )
        assert value == 0
    assert scrape.value("ccguard_store_errors_total") == 0
    for reason in ("too_large", "too_deep", "cross_site"):
        assert scrape.value("ccguard_admin_requests_refused_total", reason=reason) == 0
    for reason in REFUSAL_REASONS:
        assert scrape.value("ccguard_smtp_connections_refused_total", reason=reason) == 0
    for reason in PROXY_FAILURES:
        assert scrape.value("ccguard_smtp_proxy_header_failures_total", reason=reason) == 0
    for event in LOG_SUPPRESSED_EVENTS:
        assert scrape.value("ccguard_log_lines_suppressed_total", event=event) == 0
    for reason in DISCONNECT_REASONS:
        assert scrape.value("ccguard_smtp_clients_disconnected_total", reason=reason) == 0
    assert scrape.value("ccguard_notifications_total", result="failed") == 0
    assert scrape.value("ccguard_upstream_duration_seconds_count", outcome="accepted") == 0
    assert scrape.value("ccguard_quarantine_messages", status="held") == 0


def test_build_info_and_policy_mode() -> None:
    metrics = Metrics(version="1.2.3", mode="monitor")
    scrape = parse_metrics(metrics.render()[0])
    assert scrape.value("ccguard_build_info", version="1.2.3") == 1
    assert scrape.value("ccguard_policy_mode", mode="monitor") == 1
    assert scrape.value("ccguard_policy_mode", mode="enforce") == 0
    metrics.set_policy_mode("enforce")
    scrape = parse_metrics(metrics.render()[0])
    assert scrape.value("ccguard_policy_mode", mode="monitor") == 0
    assert scrape.value("ccguard_policy_mode", mode="enforce") == 1


def _verdict(action: Action, rule: str | None, external: int, domains: int) -> Verdict:
    exposure = Exposure(visible_external=external, external_domains=domains)
    return Verdict(action=action, rule=rule, reason="test", exposure=exposure)


def test_satisfies_the_protocols_the_smtp_front_and_upstream_client_use() -> None:
    metrics = Metrics(version="1", mode="enforce")
    front: SmtpMetrics = metrics
    upstream: UpstreamMetrics = metrics
    front.session_opened()
    upstream.observe_upstream("accepted", 0.01, None)
    scrape = parse_metrics(metrics.render()[0])
    assert scrape.value("ccguard_smtp_sessions_active") == 1
    assert scrape.value("ccguard_upstream_duration_seconds_count", outcome="accepted") == 1


def test_messages_count_by_action_and_rule_with_exposure_buckets() -> None:
    metrics = Metrics(version="1", mode="enforce")
    metrics.declare_rules([("quarantine", "huge")])
    metrics.observe_message(_verdict(Action.PASS, None, 0, 0), 800, 0.0004)
    metrics.observe_message(_verdict(Action.PASS, None, 3, 1), 2000, 0.003)
    metrics.observe_message(_verdict(Action.REJECT, "bulk", 300, 40), 90000, 0.02)
    scrape = parse_metrics(metrics.render()[0])
    assert scrape.value("ccguard_messages_total", action="pass", rule=NO_RULE, front="smtp") == 2
    assert scrape.value("ccguard_messages_total", action="reject", rule="bulk", front="smtp") == 1
    assert (
        scrape.value("ccguard_messages_total", action="quarantine", rule="huge", front="smtp") == 0
    )
    cumulative = {0: 1, 1: 1, 2: 1, 5: 2, 250: 2, 500: 3, 5000: 3}
    for le, count in cumulative.items():
        assert scrape.value("ccguard_visible_external_recipients_bucket", le=f"{le:.1f}") == count
    assert scrape.value("ccguard_visible_external_recipients_sum") == 303
    assert scrape.value("ccguard_external_domains_bucket", le="50.0") == 3
    assert scrape.value("ccguard_external_domains_bucket", le="25.0") == 2
    assert scrape.value("ccguard_message_size_bytes_count") == 3
    assert scrape.value("ccguard_message_size_bytes_sum") == 92800
    assert scrape.value("ccguard_inspection_duration_seconds_bucket", le="0.0005") == 1
    assert scrape.value("ccguard_inspection_duration_seconds_bucket", le="0.005") == 2
    assert scrape.value("ccguard_inspection_duration_seconds_count") == 3


def test_count_buckets_cover_zero_to_five_thousand() -> None:
    assert COUNT_BUCKETS[0] == 0 and COUNT_BUCKETS[-1] == 5000
    assert list(COUNT_BUCKETS) == sorted(set(COUNT_BUCKETS))


@pytest.mark.parametrize(
    ("code", "expected"), [(220, "2xx"), (354, "3xx"), (451, "4xx"), (554, "5xx"), (99, "other")]
)
def test_code_class(code: int, expected: str) -> None:
    assert code_class(code) == expected


def test_smtp_replies_sessions_upstream_and_store() -> None:
    metrics = Metrics(version="1", mode="enforce")
    metrics.observe_reply("connect", 220)
    metrics.observe_reply("rcpt", 250)
    metrics.observe_reply("rcpt", 550)
    metrics.observe_reply("vrfy", 502)  # unknown stages count as "other"
    with metrics.session(), metrics.session():
        inside = parse_metrics(metrics.render()[0]).value("ccguard_smtp_sessions_active")
    metrics.observe_upstream("accepted", 0.2)
    metrics.observe_upstream("error", 10.0, "timeout")
    metrics.store_error()
    metrics.notification("sent")
    scrape = parse_metrics(metrics.render()[0])
    assert inside == 2
    assert scrape.value("ccguard_smtp_sessions_active") == 0
    assert scrape.value("ccguard_smtp_replies_total", stage="connect", code_class="2xx") == 1
    assert scrape.value("ccguard_smtp_replies_total", stage="rcpt", code_class="5xx") == 1
    assert scrape.value("ccguard_smtp_replies_total", stage="other", code_class="5xx") == 1
    assert (
        scrape.value("ccguard_upstream_duration_seconds_bucket", outcome="accepted", le="0.25") == 1
    )
    assert scrape.value("ccguard_upstream_duration_seconds_bucket", outcome="error", le="5.0") == 0
    assert scrape.value("ccguard_upstream_duration_seconds_bucket", outcome="error", le="10.0") == 1
    assert scrape.value("ccguard_upstream_errors_total", kind="timeout") == 1
    assert scrape.value("ccguard_upstream_errors_total", kind="refused") == 0
    assert scrape.value("ccguard_store_errors_total") == 1
    assert scrape.value("ccguard_notifications_total", result="sent") == 1


def test_quarantine_gauges_follow_the_latest_counts() -> None:
    metrics = Metrics(version="1", mode="enforce")
    metrics.set_quarantine({"held": 4, "released": 2}, 7200.0)
    scrape = parse_metrics(metrics.render()[0])
    assert scrape.value("ccguard_quarantine_messages", status="held") == 4
    assert scrape.value("ccguard_quarantine_messages", status="released") == 2
    assert scrape.value("ccguard_quarantine_oldest_held_seconds") == 7200
    metrics.set_quarantine({"deleted": 1}, None)
    scrape = parse_metrics(metrics.render()[0])
    assert scrape.value("ccguard_quarantine_messages", status="held") == 0
    assert scrape.value("ccguard_quarantine_messages", status="released") == 0
    assert scrape.value("ccguard_quarantine_messages", status="deleted") == 1
    assert scrape.value("ccguard_quarantine_oldest_held_seconds") == 0


def test_instances_do_not_share_state() -> None:
    first, second = Metrics(version="1", mode="enforce"), Metrics(version="1", mode="enforce")
    first.store_error()
    assert parse_metrics(second.render()[0]).value("ccguard_store_errors_total") == 0
    assert parse_metrics(first.render()[0]).value("ccguard_store_errors_total") == 1


def test_calendar_messages_and_fallbacks_are_counted() -> None:
    metrics = Metrics(version="1", mode="enforce")
    zero = parse_metrics(metrics.render()[0])
    for replaced in ("rewrite", "split"):
        for action in ("quarantine", "reject", "tag"):
            value = zero.value("ccguard_calendar_fallbacks_total", replaced=replaced, action=action)
            assert value == 0
    assert zero.value("ccguard_calendar_messages_total", truncated="true") == 0
    invite = Exposure(visible_external=20, calendar=True, calendar_attendees_external=20)
    fallback = Verdict(
        Action.QUARANTINE, "hide", "test", invite, Action.QUARANTINE, calendar_fallback=Action.SPLIT
    )
    metrics.observe_message(fallback, 5000, 0.001)
    metrics.observe_message(Verdict(Action.PASS, None, "test", Exposure()), 500, 0.001)
    cut = Exposure(calendar_truncated=True)
    metrics.observe_message(Verdict(Action.PASS, None, "test", cut), 500, 0.001)
    scrape = parse_metrics(metrics.render()[0])
    assert (
        scrape.value("ccguard_calendar_fallbacks_total", replaced="split", action="quarantine") == 1
    )
    assert (
        scrape.value("ccguard_calendar_fallbacks_total", replaced="rewrite", action="quarantine")
        == 0
    )
    assert scrape.value("ccguard_calendar_messages_total", truncated="false") == 1
    assert scrape.value("ccguard_calendar_messages_total", truncated="true") == 1


def test_store_pool_gauges_follow_the_pool_stats() -> None:
    metrics = Metrics(version="1", mode="enforce")
    scrape = parse_metrics(metrics.render()[0])
    assert scrape.value("ccguard_store_pool_connections", state="waiting") == 0
    metrics.set_store_pool({"pool_size": 3, "pool_available": 1, "requests_waiting": 2})
    scrape = parse_metrics(metrics.render()[0])
    got = {
        s: scrape.value("ccguard_store_pool_connections", state=s)
        for s in ("open", "idle", "waiting")
    }
    assert got == {"open": 3, "idle": 1, "waiting": 2}


def test_an_unknown_disconnect_reason_is_refused_not_relabelled() -> None:
    metrics = Metrics(version="1", mode="enforce")
    metrics.client_disconnected("too_many_errors")
    with pytest.raises(ValueError, match="unknown disconnect reason 'idle'"):
        metrics.client_disconnected("idle")
    scrape = parse_metrics(metrics.render()[0])
    assert scrape.value("ccguard_smtp_clients_disconnected_total", reason="too_many_errors") == 1
    with pytest.raises(KeyError):  # no such series was made up
        scrape.value("ccguard_smtp_clients_disconnected_total", reason="idle")
