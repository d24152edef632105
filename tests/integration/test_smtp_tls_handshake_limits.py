"""Implicit-TLS handshakes in progress are bounded: they count against ``[limits]``
like sessions, they time out after ``[smtp] tls_handshake_timeout``, and a stop drops
them.  Real clients on loopback: raw sockets that never send a ClientHello, smtplib."""

from __future__ import annotations

import asyncio
import smtplib
import ssl

from relay.app import Relay
from tests.helpers.observability import parse_metrics
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.smtp_auth import tls_smtp
from tests.helpers.sockets import closed_by_server, closed_now, silent_clients
from tests.helpers.tls import Pki
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import wait_until

MESSAGE = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: tls\r\n\r\nhi\r\n"


def tls_port(relay: Relay) -> int:
    assert relay.tls_listen is not None
    return int(relay.tls_listen.rpartition(":")[2])


def send_over_tls(port: int, pki: Pki) -> dict[str, tuple[int, bytes]]:
    context = ssl.create_default_context(cafile=str(pki.ca_cert))
    with smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=20) as client:
        return client.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)


def events(log: LogCapture, name: str) -> list[dict[str, object]]:
    return [e for e in log.events() if e["event"] == name]


async def test_handshakes_in_progress_count_against_the_per_ip_limit(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    smtp = tls_smtp(pki, None, tls_listen="127.0.0.1:0")
    settings = settings_for(upstream.port, smtp=smtp, limits={"max_connections_per_ip": 3})
    async with running_relay(settings, log) as relay:
        port = tls_port(relay)
        with silent_clients(port, 5) as socks:
            await wait_until(lambda: closed_now(socks) == 2, "two of five closed, no TLS work")
            assert relay.front.handshakes.open == 3
            # Three handshakes from 127.0.0.1 in progress: a real client is refused too.
            try:
                await asyncio.to_thread(send_over_tls, port, pki)
            except (smtplib.SMTPServerDisconnected, ConnectionError, ssl.SSLError):
                pass
            else:
                raise AssertionError("a fourth handshake from one IP was served")
            next(s for s in socks if not closed_now([s])).close()  # one slot back
            await wait_until(lambda: relay.front.handshakes.open == 2, "a slot given back")
            assert await asyncio.to_thread(send_over_tls, port, pki) == {}
            # A handshake that succeeded gives its slot back too.
            await wait_until(lambda: relay.front.handshakes.open == 2, "the good one's back")
        await upstream.wait_for(1)
        lines = events(log, "client refused")
        assert [(e["reason"], e["stage"], e["client_ip"]) for e in lines] == [
            ("max_connections_per_ip", "tls", "127.0.0.1")
        ] * 3
        scrape = parse_metrics(relay.metrics.render()[0])
        refusals = scrape.value(
            "ccguard_smtp_connections_refused_total", reason="max_connections_per_ip"
        )
        assert refusals == 3


async def test_a_handshake_that_takes_too_long_is_cut_and_counted(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    smtp = tls_smtp(pki, None, tls_listen="127.0.0.1:0", tls_handshake_timeout=1)
    settings = settings_for(upstream.port, smtp=smtp)
    async with running_relay(settings, log) as relay:
        with silent_clients(tls_port(relay), 1) as (sock,):
            assert await asyncio.to_thread(closed_by_server, sock)
        await wait_until(lambda: events(log, "tls handshake failed"), "the timeout logged")
        [line] = events(log, "tls handshake failed")
        assert (line["kind"], line["reason"]) == ("implicit", "timeout")
        scrape = parse_metrics(relay.metrics.render()[0])
        value = scrape.value(
            "ccguard_smtp_tls_handshake_failures_total", kind="implicit", reason="timeout"
        )
        assert value == 1
        assert relay.front.handshakes.open == 0


async def test_a_stop_drops_handshakes_in_progress_without_a_failure_line(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    smtp = tls_smtp(pki, None, tls_listen="127.0.0.1:0", tls_handshake_timeout=60)
    relay = Relay(settings_for(upstream.port, smtp=smtp), log=log.logger)
    await relay.start()
    stopped = False
    try:
        with silent_clients(tls_port(relay), 2) as socks:
            await wait_until(lambda: relay.front.handshakes.open == 2, "both handshakes begun")
            await relay.stop()
            stopped = True
            # Closed by the stop, not left to the 60 s handshake timeout.
            closed = [await asyncio.to_thread(closed_by_server, s) for s in socks]
            assert closed == [True, True]
    finally:
        if not stopped:
            await relay.stop()
    assert events(log, "tls handshake failed") == []
    assert relay.front.handshakes.open == 0


async def test_handshakes_that_succeed_give_their_slot_back(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    """More good TLS sessions one after another than the per-IP limit: all served."""
    smtp = tls_smtp(pki, None, tls_listen="127.0.0.1:0")
    settings = settings_for(upstream.port, smtp=smtp, limits={"max_connections_per_ip": 3})
    async with running_relay(settings, log) as relay:
        for _ in range(5):
            assert await asyncio.to_thread(send_over_tls, tls_port(relay), pki) == {}
        await upstream.wait_for(5)
        assert relay.front.handshakes.open == 0
        assert events(log, "client refused") == []
