"""A flood at the door does not flood the log: ``[logging] door_log_burst`` lines per
event and reason and ``door_log_interval``, then one ``door log lines suppressed``
warning with the count; the metrics still count every connection.  Real relays on
loopback, real clients (raw sockets, plaintext sent to the TLS port)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from relay.app import Relay
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.smtp_auth import OUTSIDE, auth_attempts, tls_smtp
from tests.helpers.sockets import closed_unanswered
from tests.helpers.tls import Pki
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import wait_until

DENIED = b"554 5.7.1 Access denied: client network not allowed to relay\r\n"
SUPPRESSED = "door log lines suppressed"
# Long enough for 20 loopback connections on a loaded machine, short for the test.
INTERVAL = 2.0


def events(log: LogCapture, name: str) -> list[dict[str, Any]]:
    return [e for e in log.events() if e["event"] == name]


def metric(relay: Relay, name: str, **labels: str) -> float:
    return relay.metrics.registry.get_sample_value(name, labels) or 0.0


def refused_replies(port: int, count: int) -> list[bytes]:
    """``count`` connections one after the other; what each was told before the close."""
    replies = []
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            got = b""
            while chunk := sock.recv(4096):
                got += chunk
            replies.append(got)
    return replies


def outside(burst: int, interval: float = INTERVAL) -> dict[str, dict[str, Any]]:
    """Sections where 127.0.0.1 is outside ``allowed_networks``, with the door's log limit."""
    return {
        "smtp": {"allowed_networks": ["192.0.2.0/24"]},
        "logging": {"door_log_burst": burst, "door_log_interval": interval},
    }


async def test_a_refused_flood_writes_a_burst_then_one_summary_and_counts_every_one(
    upstream: RecordingUpstream,
) -> None:
    log = LogCapture()
    async with running_relay(settings_for(upstream.port, **outside(3)), log) as relay:
        started = time.monotonic()
        replies = await asyncio.to_thread(refused_replies, relay.smtp_port, 20)
        flood_seconds = time.monotonic() - started
        assert flood_seconds < INTERVAL, "the flood must fit in one interval"
        assert replies == [DENIED] * 20  # every client still gets its answer
        lines = events(log, "client refused")
        assert [(e["level"], e["reason"], e["client_ip"]) for e in lines] == [
            ("warning", "network", "127.0.0.1")
        ] * 3
        assert events(log, SUPPRESSED) == []  # not before the interval is over
        assert metric(relay, "ccguard_smtp_connections_refused_total", reason="network") == 20
        assert metric(relay, "ccguard_log_lines_suppressed_total", event="client_refused") == 17

        # The flood stopped: no further line comes, the summary is written all the same.
        await wait_until(lambda: events(log, SUPPRESSED), "the summary", timeout=INTERVAL + 30)
        assert time.monotonic() - started >= INTERVAL
        [summary] = events(log, SUPPRESSED)
        assert summary == {
            "event": SUPPRESSED, "level": "warning", "line": "client refused",
            "reason": "network", "suppressed": 17, "interval_seconds": INTERVAL,
            "window_seconds": INTERVAL,
        }  # fmt: skip

        # A new interval: the next refusal is written again.
        assert await asyncio.to_thread(refused_replies, relay.smtp_port, 1) == [DENIED]
        assert len(events(log, "client refused")) == 4
        assert metric(relay, "ccguard_smtp_connections_refused_total", reason="network") == 21
    assert len(events(log, SUPPRESSED)) == 1  # shutdown had nothing left to report


def tls_garbage(port: int, count: int) -> list[bytes]:
    """``count`` clients speaking plain SMTP to the implicit-TLS port; what each got."""
    return [closed_unanswered(port, b"EHLO client.example.org\r\n") for _ in range(count)]


async def test_tls_garbage_to_the_tls_port_writes_a_burst_then_one_info_summary(
    upstream: RecordingUpstream, pki: Pki
) -> None:
    log = LogCapture()
    settings = settings_for(
        upstream.port,
        smtp=tls_smtp(pki, None, tls_listen="127.0.0.1:0"),
        logging={"door_log_burst": 3, "door_log_interval": 3600},  # one window, however slow
    )
    async with running_relay(settings, log) as relay:
        assert relay.tls_listen is not None
        port = int(relay.tls_listen.rpartition(":")[2])
        assert set(await asyncio.to_thread(tls_garbage, port, 10)) == {b""}  # never greeted
        failed = "ccguard_smtp_tls_handshake_failures_total"
        await wait_until(
            lambda: metric(relay, failed, kind="implicit", reason="protocol") == 10,
            "every failed handshake counted",
        )
        lines = events(log, "tls handshake failed")
        assert [(e["level"], e["kind"], e["reason"]) for e in lines] == [
            ("info", "implicit", "protocol")
        ] * 3
        suppressed = metric(
            relay, "ccguard_log_lines_suppressed_total", event="tls_handshake_failed"
        )
        assert suppressed == 7
        assert events(log, SUPPRESSED) == []
    # Stopped within the hour: the summary says so, at info like the lines it stands for
    # (a scanner on port 465 all day is no warning an hour).
    [summary] = events(log, SUPPRESSED)
    assert 0 < summary.pop("window_seconds") < 60  # the seconds it lasted, not the hour
    assert summary == {
        "event": SUPPRESSED, "level": "info", "line": "tls handshake failed",
        "kind": "implicit", "reason": "protocol", "suppressed": 7, "interval_seconds": 3600,
    }  # fmt: skip
    assert events(log, "client refused") == []


async def test_at_level_warning_info_lines_are_not_said_to_be_suppressed(
    upstream: RecordingUpstream, pki: Pki
) -> None:
    log = LogCapture("warning")  # filters as ccguard's own logger does at this level
    settings = settings_for(
        upstream.port,
        smtp=tls_smtp(pki, None, tls_listen="127.0.0.1:0"),
        logging={"level": "warning", "door_log_burst": 3, "door_log_interval": 3600},
    )
    async with running_relay(settings, log) as relay:
        assert relay.tls_listen is not None
        port = int(relay.tls_listen.rpartition(":")[2])
        assert set(await asyncio.to_thread(tls_garbage, port, 10)) == {b""}
        failed = "ccguard_smtp_tls_handshake_failures_total"
        await wait_until(
            lambda: metric(relay, failed, kind="implicit", reason="protocol") == 10,
            "every failed handshake counted",
        )
        suppressed = metric(
            relay, "ccguard_log_lines_suppressed_total", event="tls_handshake_failed"
        )
    # Not one line was ever to be written: none is "left out", none is counted as such.
    assert events(log, "tls handshake failed") == []
    assert events(log, SUPPRESSED) == []
    assert suppressed == 0


async def test_bad_proxy_headers_are_throttled_and_the_rest_is_reported_at_shutdown(
    upstream: RecordingUpstream,
) -> None:
    log = LogCapture()
    smtp = {"proxy_protocol": True, "proxy_trusted": ["192.0.2.1/32"]}  # 127.0.0.1 untrusted
    logging = {"door_log_burst": 2, "door_log_interval": 3600}
    async with running_relay(settings_for(upstream.port, smtp=smtp, logging=logging), log) as relay:

        def flood() -> list[bytes]:
            header = b"PROXY TCP4 192.0.2.10 192.0.2.20 4000 25\r\n"
            return [closed_unanswered(relay.smtp_port, header) for _ in range(6)]

        assert set(await asyncio.to_thread(flood)) == {b""}
        failures = "ccguard_smtp_proxy_header_failures_total"
        await wait_until(
            lambda: metric(relay, failures, reason="untrusted_peer") == 6, "every refusal counted"
        )
        lines = events(log, "proxy header refused")
        assert [(e["reason"], e["peer_ip"]) for e in lines] == [("untrusted_peer", "127.0.0.1")] * 2
        assert (
            metric(relay, "ccguard_log_lines_suppressed_total", event="proxy_header_refused") == 4
        )
        assert events(log, SUPPRESSED) == []
    # The interval is an hour away: stopping says what was left out so far.
    [summary] = events(log, SUPPRESSED)
    assert (summary["line"], summary["reason"], summary["suppressed"]) == (
        "proxy header refused", "untrusted_peer", 4,
    )  # fmt: skip


async def test_a_burst_of_zero_writes_every_line(upstream: RecordingUpstream) -> None:
    log = LogCapture()
    async with running_relay(settings_for(upstream.port, **outside(0)), log) as relay:
        assert await asyncio.to_thread(refused_replies, relay.smtp_port, 8) == [DENIED] * 8
        assert metric(relay, "ccguard_log_lines_suppressed_total", event="client_refused") == 0
    assert len(events(log, "client refused")) == 8
    assert events(log, SUPPRESSED) == []


async def test_auth_refused_without_a_check_is_throttled_wrong_passwords_are_not(
    upstream: RecordingUpstream, pki: Pki, users_file: Path
) -> None:
    log = LogCapture()
    smtp = tls_smtp(pki, users_file, allowed_networks=OUTSIDE)
    logging = {"door_log_burst": 2, "door_log_interval": 3600}
    async with running_relay(settings_for(upstream.port, smtp=smtp, logging=logging), log) as relay:
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=relay.smtp_port, timeout=10, validate_certs=False
        ) as client:
            await client.ehlo()  # again, after STARTTLS
            codes = []
            for _ in range(3 + 6):  # three wrong passwords, then a guesser that goes on
                with pytest.raises(aiosmtplib.SMTPAuthenticationError) as refused:
                    await client.auth_plain("app1", "wrong-password")
                codes.append(refused.value.code)
        assert codes == [535] * 3 + [454] * 6
        assert auth_attempts(relay, "PLAIN", "throttled") == 6
        assert metric(relay, "ccguard_log_lines_suppressed_total", event="smtp_auth_failed") == 4
    lines = events(log, "smtp auth failed")
    # Every wrong password is a line (bounded by max_failures_per_minute; fail2ban reads
    # them); the 454s, answered at once and repeatable at will, are a burst then a count.
    assert [(e["result"], e["client_ip"], e["user"]) for e in lines] == [
        ("failure", "127.0.0.1", "app1")
    ] * 3 + [("throttled", "127.0.0.1", "app1")] * 2
    [summary] = events(log, SUPPRESSED)
    assert (summary["level"], summary["line"], summary["result"], summary["suppressed"]) == (
        "warning", "smtp auth failed", "throttled", 4,
    )  # fmt: skip
    assert "reason" not in summary
