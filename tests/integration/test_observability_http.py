"""/metrics, /healthz and /readyz served by a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from relay.inspect.exposure import Exposure
from relay.observability.http import CheckResult, create_app
from relay.observability.metrics import Metrics
from relay.policy.verdict import Verdict
from relay.settings import Action
from tests.helpers.observability import (
    captured_logging,
    http_get,
    json_lines,
    parse_metrics,
    serving,
)


async def test_metrics_endpoint_serves_prometheus_text() -> None:
    metrics = Metrics(version="3.1.4", mode="enforce")
    exposure = Exposure(visible_external=40, external_domains=12)
    verdict = Verdict(action=Action.SPLIT, rule="bulk", reason="test", exposure=exposure)
    metrics.observe_message(verdict, 5000, 0.001)
    async with serving(create_app(metrics)) as base:
        status, headers, body = await http_get(f"{base}/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert headers["cache-control"] == "no-store"
    scrape = parse_metrics(body)
    assert scrape.value("ccguard_messages_total", action="split", rule="bulk", front="smtp") == 1
    assert scrape.value("ccguard_build_info", version="3.1.4") == 1
    assert scrape.value("ccguard_visible_external_recipients_bucket", le="25.0") == 0
    assert scrape.value("ccguard_visible_external_recipients_bucket", le="50.0") == 1


async def test_healthz_is_ok_while_the_process_runs() -> None:
    async with serving(create_app(Metrics(version="1", mode="enforce"))) as base:
        status, _, body = await http_get(f"{base}/healthz")
    assert (status, json.loads(body)) == (200, {"status": "ok"})


async def _port_open(port: int) -> CheckResult:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError as exc:
        return False, f"connection failed: {exc.strerror}"
    writer.close()
    await writer.wait_closed()
    return True, ""


async def test_readyz_follows_a_real_dependency_going_down_and_back() -> None:
    dependency = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = dependency.sockets[0].getsockname()[1]
    checks = {"upstream": lambda: _port_open(port)}
    app = create_app(Metrics(version="1", mode="enforce"), checks=checks, readiness_timeout=1.0)
    async with serving(app) as base:
        up = await http_get(f"{base}/readyz")
        dependency.close()
        await dependency.wait_closed()
        down = await http_get(f"{base}/readyz")
        dependency = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
        back = await http_get(f"{base}/readyz")
        dependency.close()
        await dependency.wait_closed()
    assert up[0] == 200
    assert json.loads(up[2]) == {"status": "ok", "checks": {"upstream": {"ok": True, "reason": ""}}}
    assert down[0] == 503
    down_body = json.loads(down[2])
    assert down_body["status"] == "unavailable"
    assert down_body["checks"]["upstream"]["ok"] is False
    assert "connection failed" in down_body["checks"]["upstream"]["reason"]
    assert back[0] == 200


async def test_readyz_bounds_each_check_by_the_timeout() -> None:
    async def hangs() -> CheckResult:
        await asyncio.Event().wait()
        return True, ""

    async def ok() -> CheckResult:
        return True, "listening"

    async def broken() -> CheckResult:
        raise PermissionError("database is read-only")

    checks = {"smtp": ok, "store": broken, "upstream": hangs}
    app = create_app(Metrics(version="1", mode="enforce"), checks=checks, readiness_timeout=0.2)
    async with serving(app) as base:
        loop = asyncio.get_running_loop()
        started = loop.time()
        status, _, body = await http_get(f"{base}/readyz")
        elapsed = loop.time() - started
    assert status == 503
    assert json.loads(body)["checks"] == {
        "smtp": {"ok": True, "reason": "listening"},
        "store": {"ok": False, "reason": "PermissionError: database is read-only"},
        "upstream": {"ok": False, "reason": "no answer within 0.2s"},
    }
    assert elapsed < 5  # bounded, not hung


async def test_readyz_accepts_one_callable_returning_all_results() -> None:
    state = {"ready": False}

    async def all_checks() -> dict[str, CheckResult]:
        return {"store": (state["ready"], "" if state["ready"] else "not opened yet")}

    app = create_app(Metrics(version="1", mode="enforce"), checks=all_checks)
    async with serving(app) as base:
        before = await http_get(f"{base}/readyz")
        state["ready"] = True
        after = await http_get(f"{base}/readyz")
    assert before[0] == 503
    assert json.loads(before[2])["checks"]["store"] == {"ok": False, "reason": "not opened yet"}
    assert after[0] == 200


@pytest.mark.logs_may_contain_addresses  # an address in a URL: the safety net must hide it
async def test_uvicorn_access_and_error_logs_are_json_without_addresses() -> None:
    with captured_logging(hash_key="k") as out:
        async with serving(create_app(Metrics(version="1", mode="enforce"))) as base:
            await http_get(f"{base}/healthz?who=ann@example.org")
            await http_get(f"{base}/nowhere")
    lines = json_lines(out.getvalue())  # every line parses as JSON
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert [(a["method"], a["status"]) for a in access] == [("GET", 200), ("GET", 404)]
    assert access[0]["event"] == "http_request"
    assert access[0]["path"].startswith("/healthz?who=h:")
    assert any(line["logger"] == "uvicorn.error" for line in lines)  # startup/shutdown lines
    assert "ann@example.org" not in out.getvalue()


async def test_server_leaves_signal_handlers_to_the_application() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    async with serving(create_app(Metrics(version="1", mode="enforce"))) as base:
        during = {sig: signal.getsignal(sig) for sig in before}
        status, _, _ = await http_get(f"{base}/healthz")
    assert status == 200
    assert during == before
