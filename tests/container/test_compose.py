"""deploy/compose.yaml and the files it mounts, checked by the tools that will read them:
docker-compose (the Compose file), promtool (Prometheus config with the shipped rules),
haproxy -c (the load balancer), ccguard config check (the instances' config)."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.process import ROOT, run_ccguard

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
PROMTOOL = "/usr/bin/promtool"
HAPROXY = "/usr/sbin/haproxy"


def _resolved() -> dict[str, Any]:
    """The Compose file as docker-compose resolves it (anchors, paths, defaults)."""
    result = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = yaml.safe_load(result.stdout)
    return data


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Target → source of a service's volumes, in docker-compose v1's short form
    ("SOURCE:TARGET:MODE") or Compose v2's long form."""
    mounts = {}
    for volume in service["volumes"]:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        mounts[target] = source
    return mounts


def _host_ips(service: dict[str, Any]) -> list[str]:
    return [
        p.split(":")[0] if isinstance(p, str) else p["host_ip"] for p in service.get("ports", [])
    ]


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60}
    for unit, factor in units.items():
        if duration.endswith(unit) and duration[: -len(unit)].replace(".", "").isdigit():
            return float(duration[: -len(unit)]) * factor
    raise AssertionError(f"unexpected duration {duration!r}")


def test_compose_file_is_valid_and_holds_the_whole_stack() -> None:
    services = _resolved()["services"]
    assert set(services) == {
        *("ccguard1", "ccguard2", "postgres", "haproxy", "prometheus", "grafana", "sink"),
    }
    grace = tomllib.loads((DEPLOY / "ccguard.toml").read_text())["smtp"]["shutdown_grace"]
    for name in ("ccguard1", "ccguard2"):
        service = services[name]
        assert Path(service["build"]["context"]) == ROOT  # the repository's Dockerfile
        assert _seconds(service["stop_grace_period"]) > grace
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        mounts = _mounts(service)
        assert Path(mounts["/etc/ccguard/ccguard.toml"]) == DEPLOY / "ccguard.toml"
    for service in services.values():  # nothing published beyond the host's loopback
        assert set(_host_ips(service)) <= {"127.0.0.1"}


def test_instances_trust_only_haproxy_and_haproxy_checks_readyz() -> None:
    resolved = _resolved()["services"]
    settings = tomllib.loads((DEPLOY / "ccguard.toml").read_text())["smtp"]
    haproxy_ip = ipaddress.ip_address(resolved["haproxy"]["networks"]["mail"]["ipv4_address"])
    trusted = [ipaddress.ip_network(n) for n in settings["proxy_trusted"]]
    allowed = [ipaddress.ip_network(n) for n in settings["allowed_networks"]]
    assert settings["proxy_protocol"] is True
    assert trusted == [ipaddress.ip_network(f"{haproxy_ip}/32")]
    assert not any(t.overlaps(a) for t in trusted for a in allowed)
    config = (DEPLOY / "haproxy.cfg").read_text()
    assert "option httpchk GET /readyz" in config
    for name in ("ccguard1", "ccguard2"):
        assert f"server {name} {name}:10025 send-proxy-v2 check port 8025" in config
    result = subprocess.run([HAPROXY, "-c", "-f", str(DEPLOY / "haproxy.cfg")], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()


def test_instance_config_passes_config_check() -> None:
    result = run_ccguard("config", "check", "--config", str(DEPLOY / "ccguard.toml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "configuration OK" in result.stdout


def test_prometheus_config_loads_the_shipped_alert_rules(tmp_path: Path) -> None:
    """Laid out as the container sees it: prometheus.yml with rules/ beside it."""
    prometheus = _resolved()["services"]["prometheus"]
    mounts = {target: Path(source) for target, source in _mounts(prometheus).items()}
    for target, source in mounts.items():
        path = tmp_path / Path(target).relative_to("/etc/prometheus")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, path)
    assert mounts["/etc/prometheus/rules/ccguard-alerts.yml"] == (
        ROOT / "config" / "prometheus" / "ccguard-alerts.yml"
    )
    result = subprocess.run(
        [PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    scraped = yaml.safe_load((tmp_path / "prometheus.yml").read_text())["scrape_configs"]
    assert scraped[0]["static_configs"][0]["targets"] == ["ccguard1:8025", "ccguard2:8025"]


def test_grafana_provisions_the_shipped_dashboard_and_prometheus() -> None:
    grafana = _resolved()["services"]["grafana"]
    mounts = {target: Path(source) for target, source in _mounts(grafana).items()}
    provisioning = mounts["/etc/grafana/provisioning"]
    [provider] = yaml.safe_load((provisioning / "dashboards" / "ccguard.yml").read_text())[
        "providers"
    ]
    dashboards = Path(provider["options"]["path"])
    assert mounts[str(dashboards / "ccguard.json")] == (
        ROOT / "config" / "grafana" / "ccguard-dashboard.json"
    )
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
