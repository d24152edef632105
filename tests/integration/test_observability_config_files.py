"""The shipped alert rules and dashboard are valid and use only real metrics."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from relay.observability.metrics import Metrics
from tests.helpers.observability import parse_metrics

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "config/prometheus/ccguard-alerts.yml"
ALERT_TESTS = ROOT / "config/prometheus/ccguard-alerts.test.yml"
DASHBOARD = ROOT / "config/grafana/ccguard-dashboard.json"
PROMTOOL = "/usr/bin/promtool"  # Debian package prometheus; missing means failure, not skip
METRIC = re.compile(r"ccguard_[a-z_]+")


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def _exposed_names() -> set[str]:
    scrape = parse_metrics(Metrics(version="1", mode="enforce").render()[0])
    names = set()
    for family, kind in scrape.types.items():
        names.add(family)
        if kind == "histogram":
            names.update(f"{family}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
    return names


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    return [t["expr"] for p in panels for t in p["targets"]]


def test_alert_rules_pass_promtool_check() -> None:
    result = _promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_fire_as_their_unit_tests_expect() -> None:
    result = _promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_use_only_metrics_ccguard_exposes() -> None:
    used = set(METRIC.findall(ALERTS.read_text()))
    assert used, "no ccguard metric found in the alert rules"
    assert used <= _exposed_names(), used - _exposed_names()


def test_dashboard_uses_only_metrics_ccguard_exposes() -> None:
    used = {name for expr in _dashboard_exprs() for name in METRIC.findall(expr)}
    assert len(used) >= 10
    assert used <= _exposed_names(), used - _exposed_names()


def test_dashboard_is_importable_with_a_prometheus_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert dashboard["uid"] and dashboard["title"] and "id" not in dashboard
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("action", "external recipients", "upstream", "quarantine", "smtp replies"):
        assert topic in titles


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses expressions only inside rule files, so wrap each query in
    # a recording rule after substituting Grafana's variables.
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(_dashboard_exprs()):
        concrete = expr.replace("$__rate_interval", "5m").replace("$instance", ".*")
        rules += [f"      - record: dashboard:q{i}", f"        expr: {json.dumps(concrete)}"]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text("\n".join(rules) + "\n")
    result = _promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
