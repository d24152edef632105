"""deploy/compose.yaml brought up for real (without Grafana, which Debian does not
package): mail through HAProxy with the PROXY protocol to either instance and into the
sink, a message held through one instance reviewed through the other (one PostgreSQL,
one users file), Prometheus scraping both with the shipped rules, and one instance
stopped gracefully while the other keeps taking mail."""

from __future__ import annotations

import io
import json
import smtplib
import time
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from tests.helpers.compose import Stack
from tests.helpers.docker import SUMMARY, BuiltImage, Docker
from tests.helpers.privacy import register_stream


@pytest.fixture(scope="module")
def stack(docker: Docker, image: BuiltImage) -> Iterator[Stack]:
    stack = Stack(docker, image)
    try:
        stack.up()
        SUMMARY.extend(f"compose stack: {tag}: {how}" for tag, how in stack.origins.items())
        SUMMARY.append("compose stack: grafana not started (no Debian package, no registry)")
        yield stack
    finally:
        for service in ("ccguard1", "ccguard2"):
            register_stream(io.StringIO(stack.compose("logs", "--no-color", service).stdout))
        stack.down()


def _message(to: list[str], subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content("Through the whole stack.\n")
    return msg.as_bytes()


def _send(stack: Stack, to: list[str], subject: str, timeout: float = 180) -> tuple[int, bytes]:
    """Send through HAProxy; until an instance is ready HAProxy closes the connection,
    so retry then (bounded), and give the reply to end of DATA."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", stack.ports["SMTP"], timeout=30) as client:
                client.ehlo("client.example.org")
                client.mail("alice@example.org")
                for rcpt in to:
                    client.rcpt(rcpt)
                code, reply = client.data(_message(to, subject))
                return int(code), bytes(reply)
        except (smtplib.SMTPServerDisconnected, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _transactions(stack: Stack) -> list[dict[str, Any]]:
    lines = []
    for service in ("ccguard1", "ccguard2"):
        for line in stack.logs(service).splitlines():
            _, _, payload = line.partition("| ")
            if '"event": "transaction"' in payload:
                lines.append(json.loads(payload))
    return lines


def test_mail_goes_through_haproxy_with_the_clients_address_into_the_sink(stack: Stack) -> None:
    code, reply = _send(stack, ["bob@example.com"], "through the stack")
    assert code == 250, reply
    delivered = stack.exec("sink", "sh", "-c", "cat /var/lib/ccguard/sink/*.eml")
    assert "Subject: through the stack" in delivered
    assert "by ccguard1.example.org" in delivered or "by ccguard2.example.org" in delivered
    [line] = [t for t in _transactions(stack) if t.get("action") == "pass"]
    # The PROXY header named the client as HAProxy saw it (Docker's gateway), not
    # HAProxy's own address 172.28.0.10.
    assert line["client_ip"] == "172.28.0.1"


def test_held_through_one_instance_is_reviewed_through_the_other(stack: Stack) -> None:
    crowd = [f"p{n}@example.com" for n in range(12)]
    code, reply = _send(stack, crowd, "held in the stack")
    assert code == 250 and b"held for review" in reply, reply
    stack.exec(
        *("ccguard1", "ccguard", "admin", "add-user", "reviewer", "--password-stdin"),
        input="stack-pass\n",
    )
    for admin in ("ADMIN1", "ADMIN2"):
        api = f"http://127.0.0.1:{stack.ports[admin]}/api/quarantine"
        response = httpx.get(api, auth=("reviewer", "stack-pass"), timeout=30)
        assert response.status_code == 200, response.text
        assert [i["subject"] for i in response.json()["items"]] == ["held in the stack"]


def _prometheus(stack: Stack, path: str) -> Any:
    url = f"http://127.0.0.1:{stack.ports['PROMETHEUS']}{path}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)["data"]


def test_prometheus_scrapes_both_instances_with_the_shipped_rules(stack: Stack) -> None:
    deadline = time.monotonic() + 120
    health: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            targets = _prometheus(stack, "/api/v1/targets")["activeTargets"]
        except OSError:
            targets = []
        health = {t["labels"]["instance"]: t["health"] for t in targets}
        if health == {"ccguard1:8025": "up", "ccguard2:8025": "up"}:
            break
        time.sleep(1)
    assert health == {"ccguard1:8025": "up", "ccguard2:8025": "up"}
    rules = {r["name"] for g in _prometheus(stack, "/api/v1/rules")["groups"] for r in g["rules"]}
    assert {"CCGuardInstanceDown", "CCGuardUpstreamFailing", "CCGuardStoreErrors"} <= rules


def test_stopping_one_instance_is_graceful_and_the_other_takes_the_mail(stack: Stack) -> None:
    result = stack.compose("stop", "ccguard1")
    assert result.returncode == 0, result.stderr
    state = stack.state("ccguard1")
    assert (state["Running"], state["ExitCode"]) == (False, 0)
    assert "ccguard stopped" in stack.logs("ccguard1")
    code, reply = _send(stack, ["carol@example.com"], "after the stop", timeout=60)
    assert code == 250, reply
    received = [t for t in _transactions(stack) if t.get("action") == "pass"]
    assert len(received) == 2
