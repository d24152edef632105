"""The implicit-TLS listener (``[smtp] tls_listen``, port 465 style) behind a load balancer:
the PROXY header comes in clear before the ClientHello (HAProxy ``send-proxy-v2`` and
``send-proxy``), with a real HAProxy, real TLS clients and hand-cut TCP writes."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import ssl
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from relay.app import Relay
from tests.helpers.haproxy import Frontend, free_port, running_haproxy
from tests.helpers.proxy_tls import deliver_header_first, v1, v2
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.smtp_auth import tls_smtp
from tests.helpers.sockets import (
    closed_by_server,
    closed_now,
    closed_unanswered,
    silent_clients,
)
from tests.helpers.tls import Pki
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import wait_until
from tests.helpers.workers import running_workers

MESSAGE = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
#: The reply codes of a delivery: greeting, EHLO, MAIL, RCPT, DATA, end of data, QUIT.
DELIVERED = [b"220", b"250", b"250", b"250", b"354", b"250", b"221"]


def behind_proxy(pki: Pki, **smtp: Any) -> dict[str, Any]:
    proxy = {"tls_listen": "127.0.0.1:0", "proxy_protocol": True,
             "proxy_trusted": ["127.0.0.1/32"], "allowed_networks": ["192.0.2.0/24"]}  # fmt: skip
    return tls_smtp(pki, None, **{**proxy, **smtp})


def tls_port(relay: Relay) -> int:
    assert relay.tls_listen is not None
    return int(relay.tls_listen.rpartition(":")[2])


def client_context(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_cert))


def events(log: LogCapture, name: str) -> list[dict[str, Any]]:
    return [e for e in log.events() if e["event"] == name]


def proxy_failures(relay: Relay) -> dict[str, float]:
    registry = relay.metrics.registry
    name = "ccguard_smtp_proxy_header_failures_total"
    reasons = ("untrusted_peer", "invalid", "timeout", "no_address")
    return {r: registry.get_sample_value(name, {"reason": r}) or 0.0 for r in reasons}


def tls_failures(relay: Relay) -> float:
    metric = relay.metrics.registry
    name = "ccguard_smtp_tls_handshake_failures_total"
    return sum(
        metric.get_sample_value(name, {"kind": "implicit", "reason": r}) or 0.0
        for r in ("protocol", "closed", "timeout", "other")
    )


def send_ssl(port: int, context: ssl.SSLContext) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP_SSL("127.0.0.1", port, context=context, timeout=30) as client:
        return client.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)


async def test_haproxy_send_proxy_v2_and_v1_in_front_of_tls_listen(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    # HAProxy in TCP mode forwards port 465 style connections; ccguard only sees
    # 127.0.0.1, the header names the client.  Its health checks (v2 LOCAL, then
    # close before any ClientHello) are no failed handshake.
    settings = settings_for(upstream.port, smtp=behind_proxy(pki))
    v2_port, v1_port = free_port(), free_port()
    async with running_relay(settings, log) as relay:
        port = tls_port(relay)
        fronts = [
            Frontend(v2_port, set_src="192.0.2.10", check=True, backend_port=port),
            Frontend(v1_port, set_src="192.0.2.11", send_proxy="send-proxy", backend_port=port),
        ]
        context = client_context(pki)
        with running_haproxy(fronts, relay.smtp_port) as haproxy:
            await wait_until(lambda: haproxy.check_status(0) == "L4OK", "a health check passed")
            assert await asyncio.to_thread(send_ssl, v2_port, context) == {}
            assert await asyncio.to_thread(send_ssl, v1_port, context) == {}
            await wait_until(lambda: haproxy.check_status(0) == "L4OK", "still checked OK")
        await upstream.wait_for(2)
        failed, refused = tls_failures(relay), proxy_failures(relay)
    lines = [e for e in events(log, "transaction") if "action" in e]
    assert sorted(e["client_ip"] for e in lines) == ["192.0.2.10", "192.0.2.11"]
    received = sorted(m.data.split(b"\r\n\tby ")[0].rsplit(b"(", 1)[1] for m in upstream.messages)
    assert received == [b"[192.0.2.10])", b"[192.0.2.11])"]
    assert events(log, "tls handshake failed") == [] and failed == 0
    assert events(log, "proxy header refused") == [] and set(refused.values()) == {0.0}


@pytest.mark.parametrize("header", [v1("192.0.2.20"), v2("192.0.2.20")], ids=["v1", "v2"])
@pytest.mark.parametrize("cut", ["split", "with_hello"])
async def test_header_then_tls_however_the_bytes_are_cut(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture, header: bytes, cut: str
) -> None:
    # "split": the header in three writes, each read by ccguard before the next
    # (the v2 one cut inside its signature and inside its addresses).  "with_hello":
    # header and ClientHello in one write: ccguard must not read past the header.
    writes = [header[:3], header[3:20], header[20:]] if cut == "split" else [header]
    settings = settings_for(upstream.port, smtp=behind_proxy(pki))
    async with running_relay(settings, log) as relay:
        replies = await asyncio.to_thread(
            deliver_header_first, tls_port(relay), client_context(pki), writes,
            hello_joined=cut == "with_hello",
        )  # fmt: skip
        await upstream.wait_for(1)
    assert replies[0] == b"220 ccguard.test ESMTP ccguard"
    assert [r[:3] for r in replies] == DELIVERED
    assert [e["client_ip"] for e in events(log, "transaction") if "action" in e] == ["192.0.2.20"]
    assert b"([192.0.2.20])" in upstream.messages[0].data


async def test_silent_trusted_peer_is_closed_after_proxy_timeout_without_a_handshake(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    settings = settings_for(upstream.port, smtp=behind_proxy(pki, proxy_timeout=3))
    async with running_relay(settings, log) as relay:
        got = await asyncio.to_thread(closed_unanswered, tls_port(relay), b"")
        refused, failed = proxy_failures(relay), tls_failures(relay)
    assert got == b""
    lines = events(log, "proxy header refused")
    assert [(e["level"], e["peer_ip"], e["reason"]) for e in lines] == [
        ("warning", "127.0.0.1", "timeout")
    ]
    assert refused["timeout"] == 1 and failed == 0
    assert events(log, "tls handshake failed") == []


def bare_tls(port: int, context: ssl.SSLContext) -> None:
    """A TLS client straight to ccguard, no header: its handshake is never answered."""
    with pytest.raises((ssl.SSLError, ConnectionError)):
        send_ssl(port, context)


async def test_no_header_or_half_a_header_is_refused_without_a_handshake(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    settings = settings_for(upstream.port, smtp=behind_proxy(pki))
    clients: list[Callable[[int], object]] = [
        lambda port: closed_unanswered(port, b"EHLO client.example.org\r\n"),  # garbage
        lambda port: bare_tls(port, client_context(pki)),  # a ClientHello first
        lambda port: closed_unanswered(port, b"PROXY TCP4 192.0.2.", leave=True),  # gone
        lambda port: closed_unanswered(port, v2("192.0.2.20")[:14], leave=True),
    ]
    async with running_relay(settings, log) as relay:
        for client in clients:
            assert await asyncio.to_thread(client, tls_port(relay)) in (b"", None)
        refused, failed = proxy_failures(relay), tls_failures(relay)
    reasons = [e["reason"] for e in events(log, "proxy header refused")]
    assert reasons == ["invalid"] * 4 and refused["invalid"] == 4
    assert events(log, "tls handshake failed") == [] and failed == 0
    assert upstream.connections == 0


async def test_header_from_untrusted_peer_is_closed_unread_on_the_tls_port(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    smtp = behind_proxy(pki, proxy_trusted=["192.0.2.1/32"])
    async with running_relay(settings_for(upstream.port, smtp=smtp), log) as relay:
        got = await asyncio.to_thread(closed_unanswered, tls_port(relay), v1("192.0.2.20"))
        refused, failed = proxy_failures(relay), tls_failures(relay)
    assert got == b""
    lines = events(log, "proxy header refused")
    assert [(e["peer_ip"], e["reason"]) for e in lines] == [("127.0.0.1", "untrusted_peer")]
    assert refused["untrusted_peer"] == 1 and failed == 0
    assert events(log, "tls handshake failed") == []


async def test_two_workers_read_the_header_before_the_handshake(
    upstream: RecordingUpstream, pki: Pki, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings_for(upstream.port, smtp=behind_proxy(pki, tls_listen=f"127.0.0.1:{port}"))
    async with running_workers(settings, 2, tmp_path) as relay:
        for client_ip, header in (("192.0.2.30", v2), ("192.0.2.31", v1)):
            writes = [header(client_ip)]
            replies = await asyncio.to_thread(
                deliver_header_first, port, client_context(pki), writes, hello_joined=True
            )
            assert [r[:3] for r in replies] == DELIVERED, (client_ip, replies)
        await upstream.wait_for(2)
        await wait_until(
            lambda: len([e for e in relay.events() if e.get("event") == "transaction"]) == 2,
            "both transaction lines written",
        )
        lines = [e for e in relay.events() if e.get("event") == "transaction"]
    assert sorted(e["client_ip"] for e in lines) == ["192.0.2.30", "192.0.2.31"]
    assert not [e for e in relay.events() if e.get("event") == "tls handshake failed"]


async def test_failed_handshake_after_a_header_is_logged_for_the_real_client(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    # A client behind the load balancer that speaks SMTP in clear to port 465: the
    # operator needs its address, not the load balancer's.
    settings = settings_for(upstream.port, smtp=behind_proxy(pki))
    first = v2("192.0.2.40") + b"EHLO client.example.org\r\n"
    async with running_relay(settings, log) as relay:
        got = await asyncio.to_thread(closed_unanswered, tls_port(relay), first)
        await wait_until(lambda: len(events(log, "tls handshake failed")) == 1, "failure logged")
        failed, refused = tls_failures(relay), proxy_failures(relay)
    assert b"220" not in got
    lines = events(log, "tls handshake failed")
    assert [(e["client_ip"], e["kind"], e["reason"]) for e in lines] == [
        ("192.0.2.40", "implicit", "protocol")
    ]
    assert failed == 1 and set(refused.values()) == {0.0}


def trickle(port: int, header: bytes, every: float) -> float:
    """Send ``header`` a byte at a time, ``every`` seconds apart, until ccguard closes;
    how long the connection lasted."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            for byte in header:
                sock.sendall(bytes([byte]))
                time.sleep(every)  # the slow client's own pace
        except (BrokenPipeError, ConnectionResetError):
            pass
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(4096):
                pass
    return time.monotonic() - started


async def test_a_header_trickled_in_is_cut_at_proxy_timeout_in_all(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    """proxy_timeout bounds the whole header, not each read: one byte every 0.5 s of a
    50-byte header would take 25 s."""
    settings = settings_for(upstream.port, smtp=behind_proxy(pki, proxy_timeout=3))
    async with running_relay(settings, log) as relay:
        lasted = await asyncio.to_thread(trickle, tls_port(relay), v1("192.0.2.30"), 0.5)
        refused = proxy_failures(relay)
    assert lasted < 10, lasted  # cut at ~3 s (a per-read timeout would let it run 25 s)
    assert refused["timeout"] == 1
    assert events(log, "tls handshake failed") == []


async def test_the_handshake_limits_cover_the_header_read_and_the_client_behind_it(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    """The load balancer's connections count in the total while their header is read;
    once a header names a client, that client's per-IP limit applies before any TLS."""
    limits = {"max_connections": 4, "max_connections_per_ip": 2}
    settings = settings_for(upstream.port, smtp=behind_proxy(pki), limits=limits)
    async with running_relay(settings, log) as relay:
        port = tls_port(relay)
        # Silent before any header: five from the load balancer, the total is four.
        with silent_clients(port, 5) as socks:
            await wait_until(lambda: closed_now(socks) == 1, "one of five closed")
            assert relay.front.handshakes.open == 4
        await wait_until(lambda: relay.front.handshakes.open == 0, "every slot back")
        # Silent after a header naming one client: that client may hold two.  Which of
        # the three is refused depends on whose header is read last: any one may be.
        with silent_clients(port, 3, v2("192.0.2.50")) as socks:
            await wait_until(lambda: closed_now(socks) == 1, "one of three closed")
            await wait_until(lambda: relay.front.handshakes.open == 2, "two for 192.0.2.50")
            # Another client behind the same load balancer still gets through.
            got = await asyncio.to_thread(
                deliver_header_first, port, client_context(pki), [v2("192.0.2.51")]
            )
            assert [r[:3] for r in got] == DELIVERED
        await wait_until(lambda: relay.front.handshakes.open == 0, "every slot back again")
    refusals = [(e["client_ip"], e["reason"]) for e in events(log, "client refused")]
    assert refusals == [("127.0.0.1", "max_connections"), ("192.0.2.50", "max_connections_per_ip")]


async def test_a_stop_while_headers_are_half_read_frees_everything(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    relay = Relay(settings_for(upstream.port, smtp=behind_proxy(pki)), log=log.logger)
    await relay.start()
    stopped = False
    try:
        with silent_clients(tls_port(relay), 3, b"PROXY TCP4 192.0.2.") as socks:
            await wait_until(lambda: relay.front.handshakes.open == 3, "three headers begun")
            await relay.stop()
            stopped = True
            closed = [await asyncio.to_thread(closed_by_server, s) for s in socks]
    finally:
        if not stopped:
            await relay.stop()
    assert closed == [True, True, True]
    assert relay.front.handshakes.open == 0
    assert events(log, "tls handshake failed") == []


async def test_a_header_naming_no_address_is_refused_before_the_handshake(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    """A v2 header for an AF_UNIX client names no IP to check: refused as on the plain
    listener, and before any TLS work."""
    unix_tail = b"/tmp/client".ljust(108, b"\0") + b"/tmp/server".ljust(108, b"\0")
    header = b"\r\n\r\n\x00\r\nQUIT\n" + b"\x21\x31" + struct.pack("!H", len(unix_tail))
    settings = settings_for(upstream.port, smtp=behind_proxy(pki))
    async with running_relay(settings, log) as relay:
        got = await asyncio.to_thread(closed_unanswered, tls_port(relay), header + unix_tail)
        refused, failed = proxy_failures(relay), tls_failures(relay)
    assert got == b""
    assert refused["no_address"] == 1 and failed == 0
    assert events(log, "tls handshake failed") == []


async def test_a_broken_v2_signature_is_refused_at_once_not_after_the_timeout(
    upstream: RecordingUpstream, pki: Pki, log: LogCapture
) -> None:
    settings = settings_for(upstream.port, smtp=behind_proxy(pki, proxy_timeout=30))
    async with running_relay(settings, log) as relay:
        bogus = b"\r\n\r\n\x00" + b"X" * 9 + b"\xff\xff"  # a v2 start, then no signature
        got = await asyncio.to_thread(closed_unanswered, tls_port(relay), bogus)
        refused = proxy_failures(relay)
    assert got == b""
    assert refused["invalid"] == 1 and refused["timeout"] == 0
