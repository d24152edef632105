"""STARTTLS modes and AUTH towards the upstream, end to end.

A real SMTP client sends to a real ccguard, which forwards to a real aiosmtpd
upstream on 127.0.0.1 that offers (or does not offer) STARTTLS with certificates
made for this test session by the ``openssl`` command line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiosmtplib
import pytest

from relay.app import Relay
from tests.helpers.observability import parse_metrics
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.tls import Pki, TlsUpstream

MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@example.com>\r\n"
    b"Subject: over TLS\r\n"
    b"\r\n"
    b"Hello Bob.\r\n"
)
PASSWORD = "s3cret-Pa55word"


@dataclass
class Outcome:
    """What the client saw: the reply that ended the transaction."""

    code: int
    text: str
    stage: str  # "MAIL" if refused there, else "DATA"


async def send_one(relay: Relay) -> Outcome:
    """MAIL, RCPT, DATA to ccguard (in clear, as a client on loopback would)."""
    async with aiosmtplib.SMTP(
        hostname="127.0.0.1", port=relay.smtp_port, start_tls=False, timeout=20
    ) as client:
        try:
            await client.mail("alice@example.org")
        except aiosmtplib.SMTPResponseException as exc:
            return Outcome(exc.code, exc.message, "MAIL")
        await client.rcpt("bob@example.com")
        resp = await client.data(MESSAGE)
        return Outcome(resp.code, resp.message, "DATA")


def upstream_errors(relay: Relay, kind: str) -> float:
    return parse_metrics(relay.metrics.render()[0]).value(
        "ccguard_upstream_errors_total", kind=kind
    )


def tls_settings(upstream: TlsUpstream, **upstream_keys: Any) -> Any:
    return settings_for(upstream.port, upstream=upstream_keys)


@pytest.fixture
async def start_upstream() -> AsyncIterator[Any]:
    started: list[TlsUpstream] = []

    async def start(**kwargs: Any) -> TlsUpstream:
        server = await TlsUpstream(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        await server.stop()


def assert_refused_for_tls(
    outcome: Outcome, up: TlsUpstream, relay: Relay, log: LogCapture, why: str
) -> None:
    """451 4.4.1 at MAIL, nothing delivered, counted and logged as kind tls with ``why``."""
    assert (outcome.stage, outcome.code) == ("MAIL", 451)
    assert outcome.text.startswith("4.4.1 ")
    assert up.messages == []
    assert upstream_errors(relay, "tls") == 1
    (event,) = [e for e in log.events() if e.get("event") == "upstream did not accept MAIL FROM"]
    assert event["kind"] == "tls"
    assert why in event["error"]


# -- required ---------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_required_with_trusted_ca_delivers_encrypted(
    pki: Pki, start_upstream: Any, host: str
) -> None:
    up = await start_upstream(tls=pki.localhost)
    settings = tls_settings(up, starttls="required", ca_file=str(pki.ca_cert), host=host)
    async with running_relay(settings) as relay:
        outcome = await send_one(relay)
        assert upstream_errors(relay, "tls") == 0
    assert (outcome.stage, outcome.code) == ("DATA", 250)
    (got,) = up.delivered
    assert got.encrypted
    assert got.received.rcpt_tos == ["bob@example.com"]


async def test_required_pooled_connection_stays_encrypted(pki: Pki, start_upstream: Any) -> None:
    up = await start_upstream(tls=pki.localhost)
    settings = tls_settings(up, starttls="required", ca_file=str(pki.ca_cert))
    async with running_relay(settings) as relay:
        first, second = await send_one(relay), await send_one(relay)
    assert (first.code, second.code) == (250, 250)
    assert [d.encrypted for d in up.delivered] == [True, True]
    assert up.connections == 1


async def test_required_untrusted_certificate_is_refused(pki: Pki, start_upstream: Any) -> None:
    up = await start_upstream(tls=pki.localhost)
    log = LogCapture()
    async with running_relay(tls_settings(up, starttls="required"), log) as relay:
        outcome = await send_one(relay)
        assert_refused_for_tls(outcome, up, relay, log, "unable to get local issuer certificate")


async def test_required_upstream_without_starttls_is_refused(pki: Pki, start_upstream: Any) -> None:
    up = await start_upstream(tls=None)
    log = LogCapture()
    settings = tls_settings(up, starttls="required", ca_file=str(pki.ca_cert))
    async with running_relay(settings, log) as relay:
        outcome = await send_one(relay)
        assert_refused_for_tls(outcome, up, relay, log, "STARTTLS extension not supported")
    assert up.mail_commands == 0  # nothing was sent in clear


@pytest.mark.parametrize(
    ("host", "why"), [("127.0.0.1", "IP address mismatch"), ("localhost", "Hostname mismatch")]
)
async def test_required_certificate_for_another_name_is_refused(
    pki: Pki, start_upstream: Any, host: str, why: str
) -> None:
    up = await start_upstream(tls=pki.other_name)  # signed by the trusted CA, wrong name
    log = LogCapture()
    settings = tls_settings(up, starttls="required", ca_file=str(pki.ca_cert), host=host)
    async with running_relay(settings, log) as relay:
        outcome = await send_one(relay)
        assert_refused_for_tls(outcome, up, relay, log, why)


# -- opportunistic and off ----------------------------------------------------------


async def test_opportunistic_untrusted_certificate_still_encrypts(
    pki: Pki, start_upstream: Any
) -> None:
    up = await start_upstream(tls=pki.other_name)  # wrong name, CA unknown: not checked
    async with running_relay(tls_settings(up, starttls="opportunistic")) as relay:
        outcome = await send_one(relay)
    assert (outcome.stage, outcome.code) == ("DATA", 250)
    (got,) = up.delivered
    assert got.encrypted


async def test_opportunistic_without_starttls_delivers_in_clear(start_upstream: Any) -> None:
    up = await start_upstream(tls=None)
    async with running_relay(tls_settings(up, starttls="opportunistic")) as relay:
        outcome = await send_one(relay)
    assert (outcome.stage, outcome.code) == ("DATA", 250)
    (got,) = up.delivered
    assert not got.encrypted


async def test_off_does_not_use_offered_starttls(pki: Pki, start_upstream: Any) -> None:
    up = await start_upstream(tls=pki.localhost)
    async with running_relay(tls_settings(up, starttls="off")) as relay:
        outcome = await send_one(relay)
    assert (outcome.stage, outcome.code) == ("DATA", 250)
    (got,) = up.delivered
    assert not got.encrypted


# -- AUTH -------------------------------------------------------------------------


@pytest.mark.parametrize("exclude", [[], ["PLAIN"]], ids=["PLAIN", "LOGIN"])
async def test_auth_after_starttls_delivers_as_user(
    pki: Pki, start_upstream: Any, exclude: list[str]
) -> None:
    up = await start_upstream(
        tls=pki.localhost, users={"relay-user": PASSWORD}, exclude_auth=exclude
    )
    settings = tls_settings(
        up, starttls="required", ca_file=str(pki.ca_cert),
        username="relay-user", password=PASSWORD,
    )  # fmt: skip
    async with running_relay(settings) as relay:
        outcome = await send_one(relay)
    assert (outcome.stage, outcome.code) == ("DATA", 250)
    (got,) = up.delivered
    assert (got.encrypted, got.auth_user) == (True, "relay-user")
    assert up.auth_attempts == [("relay-user", True)]


async def test_auth_wrong_password_defers_and_logs_without_password(
    pki: Pki, start_upstream: Any
) -> None:
    up = await start_upstream(tls=pki.localhost, users={"relay-user": PASSWORD})
    log = LogCapture()
    settings = tls_settings(
        up, starttls="required", ca_file=str(pki.ca_cert),
        username="relay-user", password="wrong-" + PASSWORD,
    )  # fmt: skip
    async with running_relay(settings, log) as relay:
        outcome = await send_one(relay)
        assert upstream_errors(relay, "auth") == 1
        assert upstream_errors(relay, "5xx") == 0
    # Our misconfiguration must not bounce the client's mail: it stays queued.
    assert (outcome.stage, outcome.code) == ("MAIL", 451)
    assert outcome.text.startswith("4.7.0 ")
    assert "authentication failed" in outcome.text.lower()
    assert up.messages == [] and up.auth_attempts[0] == ("relay-user", False)
    (event,) = [e for e in log.events() if e.get("event") == "upstream did not accept MAIL FROM"]
    assert event["kind"] == "auth"
    assert event["error"] == "authentication failed: upstream answered 535"
    assert PASSWORD not in log.text


async def test_auth_configured_but_not_offered_defers(start_upstream: Any) -> None:
    up = await start_upstream(tls=None)  # no STARTTLS, so no AUTH either
    log = LogCapture()
    settings = tls_settings(up, starttls="opportunistic", username="relay-user", password=PASSWORD)
    async with running_relay(settings, log) as relay:
        outcome = await send_one(relay)
        assert upstream_errors(relay, "auth") == 1
    assert (outcome.stage, outcome.code) == ("MAIL", 451)
    assert outcome.text.startswith("4.7.0 ")
    assert up.mail_commands == 0  # never sent mail unauthenticated
    (event,) = [e for e in log.events() if e.get("event") == "upstream did not accept MAIL FROM"]
    assert event["kind"] == "auth"
    assert "AUTH extension is not supported" in event["error"]
    assert PASSWORD not in log.text
