"""Failed handshakes on the implicit-TLS listener (``[smtp] tls_listen``, port 465 style):
one info line each and ``ccguard_smtp_tls_handshake_failures_total{kind="implicit"}``,
with real clients (a plain socket, ``openssl s_client``, smtplib) on loopback."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import ssl
from collections.abc import AsyncIterator

import pytest

from relay.app import Relay
from tests.helpers.observability import http_get, parse_metrics
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.smtp_auth import tls_smtp
from tests.helpers.smtp_clients import openssl_certificate_subject
from tests.helpers.sockets import closed_unanswered
from tests.helpers.tls import Pki
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import wait_until

MESSAGE = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: after\r\n\r\nhi\r\n"


@pytest.fixture
async def relay(upstream: RecordingUpstream, pki: Pki, log: LogCapture) -> AsyncIterator[Relay]:
    smtp = tls_smtp(pki, None, tls_listen="127.0.0.1:0")
    settings = settings_for(upstream.port, smtp=smtp, metrics={"listen": "127.0.0.1:0"})
    async with running_relay(settings, log) as running:
        yield running


def tls_port(relay: Relay) -> int:
    assert relay.tls_listen is not None
    return int(relay.tls_listen.rpartition(":")[2])


def plaintext(port: int) -> bytes:
    """Speak SMTP in clear to the TLS port; all the bytes that came back."""
    return closed_unanswered(port, b"EHLO client.example.org\r\n")


def hang_up(port: int) -> None:
    """Connect and leave before any ClientHello."""
    socket.create_connection(("127.0.0.1", port), timeout=10).close()


def failures(log: LogCapture) -> list[dict[str, object]]:
    return [e for e in log.events() if e["event"] == "tls handshake failed"]


async def failure_counts(relay: Relay) -> dict[tuple[str, str], float]:
    status, _, body = await http_get(f"http://127.0.0.1:{relay.http_port('metrics')}/metrics")
    assert status == 200
    scrape = parse_metrics(body)
    return {
        (kind, reason): scrape.value(
            "ccguard_smtp_tls_handshake_failures_total", kind=kind, reason=reason
        )
        for kind in ("starttls", "implicit")
        for reason in ("protocol", "closed", "other")
    }


async def test_failed_implicit_tls_handshakes_are_logged_and_counted(
    relay: Relay, upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    port = tls_port(relay)
    answer = await asyncio.to_thread(plaintext, port)
    assert b"220" not in answer  # never greeted in clear
    await wait_until(lambda: len(failures(log)) == 1, "the plaintext client's failure logged")
    old = await openssl_certificate_subject(
        port, starttls=False, extra=("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    )
    assert old.returncode != 0
    await wait_until(lambda: len(failures(log)) == 2, "the TLS 1.1 client's failure logged")
    await asyncio.to_thread(hang_up, port)
    await wait_until(lambda: len(failures(log)) == 3, "the hang-up logged")

    # The listener still serves a good client, which gets its message through.
    context = ssl.create_default_context(cafile=str(pki.ca_cert))

    def send() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=30) as client:
            return client.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)

    assert await asyncio.to_thread(send) == {}
    await upstream.wait_for(1)

    lines = failures(log)
    assert [(e["level"], e["kind"], e["reason"]) for e in lines] == [
        ("info", "implicit", "protocol"),
        ("info", "implicit", "protocol"),
        ("info", "implicit", "closed"),
    ]
    # The peer's IP, why, and nothing else (no addresses, no traceback).
    assert all(e["client_ip"] == "127.0.0.1" for e in lines)
    assert all(set(e) == {"event", "level", "client_ip", "kind", "reason", "detail"} for e in lines)
    assert "Traceback" not in log.text and "internal error" not in log.text
    counts = await failure_counts(relay)
    assert counts == {
        ("starttls", "protocol"): 0, ("starttls", "closed"): 0, ("starttls", "other"): 0,
        ("implicit", "protocol"): 2, ("implicit", "closed"): 1, ("implicit", "other"): 0,
    }  # fmt: skip
