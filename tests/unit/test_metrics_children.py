"""The per-message metric helpers find their labelled series through caches: same /metrics."""

from __future__ import annotations

from relay.inspect.exposure import Exposure
from relay.observability.metrics import Metrics
from relay.policy.verdict import Verdict
from relay.settings import Action
from tests.helpers.observability import parse_metrics


def test_series_created_at_start_are_on_a_fresh_scrape_at_zero() -> None:
    scrape = parse_metrics(Metrics(version="t").render()[0])
    assert scrape.value("ccguard_smtp_replies_total", stage="data", code_class="4xx") == 0
    assert scrape.value("ccguard_upstream_duration_seconds_count", outcome="refused") == 0
    assert scrape.value("ccguard_upstream_errors_total", kind="auth") == 0
    assert scrape.value("ccguard_messages_total", action="pass", rule="none", front="milter") == 0


def test_replies_with_different_codes_of_one_class_add_up_in_one_series() -> None:
    metrics = Metrics(version="t")
    for code in (250, 251, 250, 354, 221):
        metrics.observe_reply("data", code)
    metrics.observe_reply("vrfy", 252)  # unknown stage: "other"
    metrics.observe_reply("vrfy", 700)  # no SMTP code: "other"
    scrape = parse_metrics(metrics.render()[0])
    assert scrape.value("ccguard_smtp_replies_total", stage="data", code_class="2xx") == 4
    assert scrape.value("ccguard_smtp_replies_total", stage="data", code_class="3xx") == 1
    assert scrape.value("ccguard_smtp_replies_total", stage="other", code_class="2xx") == 1
    assert scrape.value("ccguard_smtp_replies_total", stage="other", code_class="other") == 1


def test_replies_past_the_cache_bound_are_still_counted() -> None:
    metrics = Metrics(version="t")
    for n in range(3000):  # more (stage, code) pairs than the cache keeps
        metrics.observe_reply(f"x{n}", 500 + n % 100)
    metrics.observe_reply("mail", 250)
    scrape = parse_metrics(metrics.render()[0])
    assert scrape.value("ccguard_smtp_replies_total", stage="other", code_class="5xx") == 3000
    assert scrape.value("ccguard_smtp_replies_total", stage="mail", code_class="2xx") == 1


def test_messages_of_a_declared_rule_count_on_its_series() -> None:
    metrics = Metrics(version="t")
    metrics.declare_rules([("reject", "bulk")])
    metrics.observe_message(Verdict(Action.REJECT, "bulk", "x", Exposure()), 10, 0.0)
    metrics.observe_message(Verdict(Action.REJECT, "bulk", "x", Exposure()), 10, 0.0, "milter")
    metrics.observe_upstream("refused", 0.01, "5xx")
    scrape = parse_metrics(metrics.render()[0])
    for front in ("smtp", "milter"):
        labels = {"action": "reject", "rule": "bulk", "front": front}
        assert scrape.value("ccguard_messages_total", **labels) == 1
    assert scrape.value("ccguard_upstream_duration_seconds_count", outcome="refused") == 1
    assert scrape.value("ccguard_upstream_errors_total", kind="5xx") == 1
