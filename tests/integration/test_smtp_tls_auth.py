"""STARTTLS, implicit TLS and SMTP AUTH on ccguard's listener, with real clients.

swaks and ``openssl s_client`` talk to a real ccguard (in the test's event
loop) that forwards to a real aiosmtpd upstream.  The "outside" network is
simulated with ``allowed_networks`` that exclude loopback, so relaying is
only possible after AUTH.  Certificates are made by the ``openssl`` command.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest

from relay.app import Relay
from tests.helpers.hangup import read_reply
from tests.helpers.observability import parse_metrics
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.smtp_auth import (
    APP2_PASSWORD,
    OUTSIDE,
    PASSWORD,
    auth_attempts,
    tls_smtp,
    transactions,
)  # fmt: skip
from tests.helpers.smtp_clients import openssl_certificate_subject, openssl_smtp, swaks
from tests.helpers.tls import Pki
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import wait_until


@pytest.fixture
async def relay(
    upstream: RecordingUpstream, pki: Pki, users_file: Path, log: LogCapture
) -> AsyncIterator[Relay]:
    settings = settings_for(upstream.port, smtp=tls_smtp(pki, users_file, allowed_networks=OUTSIDE))
    async with running_relay(settings, log) as running:
        yield running


# -- STARTTLS and what is offered when ---------------------------------------------


async def test_auth_is_offered_only_after_starttls(relay: Relay) -> None:
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=relay.smtp_port, start_tls=False, timeout=10
    ) as client:
        await client.ehlo()
        assert client.supports_extension("starttls")
        assert not client.supports_extension("auth")
        code, text = await client.execute_command(b"AUTH PLAIN AGFwcDEAeA==")
        assert (code, text) == (
            538,
            "5.7.11 Encryption required for requested authentication mechanism",
        )
    # openssl s_client -starttls smtp: after the handshake, EHLO offers AUTH PLAIN LOGIN.
    run = await openssl_smtp(relay.smtp_port, [b"EHLO client.example.org", b"QUIT"])
    assert "250-AUTH LOGIN PLAIN" in run.stdout, run.stdout + run.stderr
    assert "250-STARTTLS" not in run.stdout


async def test_openssl_negotiates_tls_1_2_or_newer_only(relay: Relay) -> None:
    run = await openssl_certificate_subject(relay.smtp_port)
    assert "Protocol version: TLSv1.3" in run.stderr + run.stdout, run.stderr
    v12 = await openssl_certificate_subject(relay.smtp_port, extra=("-tls1_2",))
    assert "Protocol version: TLSv1.2" in v12.stderr, v12.stderr
    # A client willing to speak TLS 1.1 (its own security level lowered) is refused.
    old = await openssl_certificate_subject(
        relay.smtp_port, extra=("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    )
    assert old.returncode != 0
    assert "Protocol version" not in old.stderr + old.stdout


async def test_a_failed_starttls_handshake_is_one_warning_line_without_traceback(
    relay: Relay, log: LogCapture
) -> None:
    # An old client that speaks TLS 1.1 only, then one that leaves after "220 Ready".
    old = await openssl_certificate_subject(
        relay.smtp_port, extra=("-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    )
    assert old.returncode != 0

    def leave_after_ready() -> bytes:
        with socket.create_connection(("127.0.0.1", relay.smtp_port), timeout=10) as sock:
            read_reply(sock)
            sock.sendall(b"EHLO client.example.org\r\n")
            read_reply(sock)
            sock.sendall(b"STARTTLS\r\n")
            return read_reply(sock)

    assert (await asyncio.to_thread(leave_after_ready)).startswith(b"220 ")
    await wait_until(lambda: len(relay.front.sessions) == 0, "the sessions to end")
    failed = [e for e in log.events() if e["event"] == "tls handshake failed"]
    assert [(e["level"], e["client_ip"], e["reason"]) for e in failed] == [
        ("warning", "127.0.0.1", "protocol"),
        ("warning", "127.0.0.1", "closed"),
    ]
    assert "internal error" not in log.text and "Traceback" not in log.text
    registry = relay.metrics.registry
    failures = {
        reason: registry.get_sample_value(
            "ccguard_smtp_tls_handshake_failures_total", {"kind": "starttls", "reason": reason}
        )
        for reason in ("protocol", "closed", "other")
    }
    assert failures == {"protocol": 1, "closed": 1, "other": 0}


async def test_a_starttls_failing_inside_a_transaction_names_its_queue_id(
    upstream: RecordingUpstream, pki: Pki
) -> None:
    log = LogCapture()
    settings = settings_for(upstream.port, smtp=tls_smtp(pki, None))  # loopback may relay

    def starttls_after_mail(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            read_reply(sock)
            for line in (b"EHLO client.example.org", b"MAIL FROM:<alice@example.org>"):
                sock.sendall(line + b"\r\n")
                read_reply(sock)
            sock.sendall(b"STARTTLS\r\n")
            return read_reply(sock)

    async with running_relay(settings, log) as relay:
        assert (await asyncio.to_thread(starttls_after_mail, relay.smtp_port)).startswith(b"220")
        await wait_until(lambda: len(relay.front.sessions) == 0, "the session to end")
    events = log.events()
    failed = [e for e in events if e["event"] == "tls handshake failed"]
    ended = [e for e in events if e["event"] == "transaction"]
    assert len(failed) == len(ended) == 1 and failed[0]["level"] == "warning"
    assert failed[0]["queue_id"] == ended[0]["queue_id"]
    assert ended[0]["outcome"] == "client disconnected"
    assert "internal error" not in log.text and "Traceback" not in log.text


async def test_starttls_required_refuses_mail_in_clear(
    upstream: RecordingUpstream, pki: Pki
) -> None:
    settings = settings_for(upstream.port, smtp=tls_smtp(pki, None, starttls="required"))
    async with running_relay(settings) as relay:
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=relay.smtp_port, start_tls=False, timeout=10
        ) as client:
            with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
                await client.mail("noreply@example.org")
            assert (refused.value.code, refused.value.message) == (
                530, "5.7.0 Must issue a STARTTLS command first",
            )  # fmt: skip
        clear = await swaks(relay.smtp_port)
        assert "530 5.7.0 Must issue a STARTTLS command first" in clear.replies(), clear.stdout
        # After STARTTLS the same client relays (loopback is an allowed network here).
        ok = await swaks(relay.smtp_port, "--tls")
        assert ok.returncode == 0, ok.stdout
    assert len(upstream.messages) == 1
    assert b"with ESMTPS id" in upstream.messages[0].data


async def test_tls_without_auth_configured_offers_no_auth_and_keeps_connect_refusal(
    upstream: RecordingUpstream, pki: Pki
) -> None:
    settings = settings_for(upstream.port, smtp=tls_smtp(pki, None))
    async with running_relay(settings) as relay:
        run = await openssl_smtp(
            relay.smtp_port, [b"EHLO client.example.org", b"AUTH PLAIN AGFwcDEAeA==", b"QUIT"]
        )
        assert "250-8BITMIME" in run.stdout and "250-AUTH" not in run.stdout, run.stdout
        assert "503 5.5.1 Authentication not enabled" in run.stdout.splitlines()
    outside = settings_for(upstream.port, smtp=tls_smtp(pki, None, allowed_networks=OUTSIDE))
    async with running_relay(outside) as relay:
        refused = await swaks(relay.smtp_port, "--tls")
        assert "554 5.7.1 Access denied: client network not allowed to relay" in refused.stdout


# -- AUTH from outside the allowed networks ---------------------------------------


async def test_outside_client_without_auth_is_refused_at_mail(
    relay: Relay, upstream: RecordingUpstream
) -> None:
    run = await swaks(relay.smtp_port, "--tls")
    assert run.returncode != 0
    assert "530 5.7.0 Authentication required" in run.replies(), run.stdout
    assert upstream.messages == [] and upstream.connections == 0


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_swaks_auth_relays_from_outside(
    relay: Relay, upstream: RecordingUpstream, log: LogCapture, mechanism: str
) -> None:
    run = await swaks(
        relay.smtp_port, "--tls", "--auth", mechanism,
        "--auth-user", "app1", "--auth-password", PASSWORD,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout
    assert "235 2.7.0 Authentication successful" in run.replies()
    (message,) = upstream.messages
    assert b"Subject: swaks over TLS" in message.data
    assert b"with ESMTPSA id" in message.data
    (line,) = transactions(log)
    assert line["auth_user"] == "app1"
    assert line["tls"] in ("TLSv1.2", "TLSv1.3") and line["tls_cipher"]
    assert PASSWORD not in log.text
    assert auth_attempts(relay, mechanism, "success") == 1
    scrape = parse_metrics(relay.metrics.render()[0])
    assert scrape.value("ccguard_smtp_tls_sessions_total", version=line["tls"]) == 1


@pytest.mark.parametrize(("user", "password"), [("app1", "wrong-password"), ("nobody", PASSWORD)])
async def test_wrong_password_and_unknown_user_get_the_same_535(
    relay: Relay, upstream: RecordingUpstream, log: LogCapture, user: str, password: str
) -> None:
    run = await swaks(
        relay.smtp_port,
        "--tls",
        "--auth",
        "PLAIN",
        "--auth-user",
        user,
        "--auth-password",
        password,
    )
    assert run.returncode != 0
    assert "535 5.7.8 Authentication credentials invalid" in run.replies(), run.stdout
    assert upstream.messages == []
    (failed,) = [e for e in log.events() if e["event"] == "smtp auth failed"]
    assert failed["user"] == ("app1" if user == "app1" else "(unknown user)")
    assert password not in log.text


async def test_repeated_failures_are_throttled_even_with_the_right_password(
    relay: Relay, upstream: RecordingUpstream
) -> None:
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=relay.smtp_port, timeout=10, validate_certs=False
    ) as client:
        await client.ehlo()  # again, after STARTTLS
        for _ in range(3):
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as bad:
                await client.auth_plain("app1", "wrong-password")
            assert (bad.value.code, bad.value.message) == (
                535, "5.7.8 Authentication credentials invalid",
            )  # fmt: skip
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as slowed:
            await client.auth_plain("app1", PASSWORD)
        assert (slowed.value.code, slowed.value.message) == (
            454, "4.7.0 Too many failed authentication attempts, try again later",
        )  # fmt: skip
    assert auth_attempts(relay, "PLAIN", "failure") == 3
    assert auth_attempts(relay, "PLAIN", "throttled") == 1


async def test_password_checks_run_on_the_hashing_pool_not_the_event_loop(relay: Relay) -> None:
    gate = threading.Event()
    busy = [asyncio.ensure_future(relay.hashing.run(gate.wait, 30)) for _ in range(2)]
    try:
        async with (
            aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.smtp_port, validate_certs=False,
                            timeout=10) as first,
            aiosmtplib.SMTP(hostname="127.0.0.1", port=relay.smtp_port, validate_certs=False,
                            timeout=10) as second,
        ):  # fmt: skip
            await first.ehlo()
            login = asyncio.ensure_future(first.auth_plain("app1", PASSWORD))
            await wait_until(lambda: relay.hashing.in_use == 3, "the check to queue on the pool")
            # While the password check waits for a hashing thread, other clients are served.
            assert (await second.noop()).code == 250
            assert not login.done()
            gate.set()
            assert (await login).code == 235
    finally:
        gate.set()
        await asyncio.gather(*busy)


async def test_a_swamped_password_checker_answers_454_at_once(relay: Relay) -> None:
    gate = threading.Event()
    full = [asyncio.ensure_future(relay.hashing.run(gate.wait, 30)) for _ in range(10)]
    try:
        await wait_until(lambda: relay.hashing.in_use == 10, "the pool to fill")
        async with aiosmtplib.SMTP(
            hostname="127.0.0.1", port=relay.smtp_port, validate_certs=False, timeout=10
        ) as client:
            await client.ehlo()
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as busy:
                await client.auth_plain("app1", PASSWORD)
            assert (busy.value.code, busy.value.message) == (
                454, "4.7.0 Temporary authentication failure, try again later",
            )  # fmt: skip
    finally:
        gate.set()
        await asyncio.gather(*full)
    assert auth_attempts(relay, "PLAIN", "busy") == 1


# -- policy: required, sender binding ----------------------------------------------


async def test_auth_required_demands_auth_even_from_allowed_networks(
    upstream: RecordingUpstream, pki: Pki, users_file: Path
) -> None:
    smtp = tls_smtp(pki, users_file, auth={"required": True})
    async with running_relay(settings_for(upstream.port, smtp=smtp)) as relay:
        refused = await swaks(relay.smtp_port, "--tls")
        assert "530 5.7.0 Authentication required" in refused.replies(), refused.stdout
        ok = await swaks(
            relay.smtp_port, "--tls", "--auth", "LOGIN",
            "--auth-user", "app2", "--auth-password", APP2_PASSWORD,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stdout
    assert len(upstream.messages) == 1


async def test_sender_patterns_bind_users_to_their_addresses(
    upstream: RecordingUpstream, pki: Pki, users_file: Path
) -> None:
    patterns = {"app1": ["noreply@example.org"], "*": ["*@apps.example.org"]}
    smtp = tls_smtp(pki, users_file, allowed_networks=OUTSIDE, auth={"sender_patterns": patterns})
    async with running_relay(settings_for(upstream.port, smtp=smtp)) as relay:

        async def send(user: str, password: str, sender: str) -> list[str]:
            run = await swaks(
                relay.smtp_port, "--tls", "--auth", "PLAIN",
                "--auth-user", user, "--auth-password", password, sender=sender,
            )  # fmt: skip
            return run.replies()

        assert "553 5.7.1 Sender address not owned by user" in await send(
            "app1", PASSWORD, "ceo@example.org"
        )
        assert "553 5.7.1 Sender address not owned by user" in await send(
            "app1",
            PASSWORD,
            "bot@apps.example.org",  # app1 has its own entry: "*" not used
        )
        shouting = "noreply@" + "example".upper() + ".org"  # domains match in any case
        assert "250 2.1.0 Sender OK" in await send("app1", PASSWORD, shouting)
        assert "250 2.1.0 Sender OK" in await send("app2", APP2_PASSWORD, "bot@apps.example.org")
        assert "553 5.7.1 Sender address not owned by user" in await send(
            "app2", APP2_PASSWORD, "noreply@example.org"
        )
    assert len(upstream.messages) == 2


# -- implicit TLS (RFC 8314) --------------------------------------------------------


async def test_implicit_tls_listener_with_auth(
    upstream: RecordingUpstream, pki: Pki, users_file: Path, log: LogCapture
) -> None:
    smtp = tls_smtp(pki, users_file, allowed_networks=OUTSIDE, tls_listen="127.0.0.1:0")
    async with running_relay(settings_for(upstream.port, smtp=smtp), log) as relay:
        assert relay.tls_listen is not None
        port = int(relay.tls_listen.rpartition(":")[2])
        ehlo = await openssl_smtp(port, [b"EHLO client.example.org", b"QUIT"], starttls=False)
        assert "250-AUTH LOGIN PLAIN" in ehlo.stdout and "STARTTLS" not in ehlo.stdout
        refused = await swaks(port, "--tls-on-connect")
        assert "530 5.7.0 Authentication required" in refused.replies(), refused.stdout
        ok = await swaks(
            port, "--tls-on-connect", "--auth", "PLAIN",
            "--auth-user", "app1", "--auth-password", PASSWORD,
        )  # fmt: skip
        assert ok.returncode == 0, ok.stdout
    (message,) = upstream.messages
    assert b"with ESMTPSA id" in message.data
    (line,) = transactions(log)
    assert line["auth_user"] == "app1" and line["tls"] in ("TLSv1.2", "TLSv1.3")
