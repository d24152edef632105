"""ccguard behind a load balancer: a real HAProxy with send-proxy-v2, and PROXY v1 headers."""

from __future__ import annotations

import asyncio
import re
import smtplib
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from relay.app import Relay
from tests.helpers.hangup import read_reply
from tests.helpers.haproxy import HAPROXY, Frontend, free_port, running_haproxy
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.sockets import closed_unanswered
from tests.helpers.upstream import RecordingUpstream

MESSAGE = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
LEAK = (
    b"From: alice@example.org\r\nTo: bob@example.com, carol@example.net\r\n"
    b"Subject: all of you\r\n\r\nbody\r\n"
)
HOLD = [{"name": "hold-leaks", "min_visible_external": 2, "action": "quarantine"}]


class ProxiedSMTP(smtplib.SMTP):
    """smtplib that writes a PROXY header first, as a load balancer would."""

    def __init__(self, header: bytes, host: str, port: int) -> None:
        self._header = header
        super().__init__(host, port, timeout=30)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = super()._get_socket(host, port, timeout)
        sock.sendall(self._header)
        return sock


def v1(client_ip: str) -> bytes:
    return f"PROXY TCP4 {client_ip} 127.0.0.1 40000 25\r\n".encode()


def refused(relay: Relay, metric: str, reason: str) -> float:
    value = relay.metrics.registry.get_sample_value(metric + "_total", {"reason": reason})
    return value or 0.0


def hangups(relay: Relay) -> float:
    """Client hang-ups counted so far: ccguard closing a connection is not one."""
    metric = relay.metrics.client_hangups
    return sum(s.value for m in metric.collect() for s in m.samples if s.name.endswith("_total"))


def send(port: int, message: bytes = MESSAGE) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        rcpts = ["bob@example.com", "carol@example.net"]
        return client.sendmail("alice@example.org", rcpts, message)


def behind_proxy(upstream: RecordingUpstream, **smtp: object) -> dict[str, object]:
    return {
        "allowed_networks": ["192.0.2.0/24"],
        "proxy_protocol": True,
        "proxy_trusted": ["127.0.0.1/32"],
        **smtp,
    }


async def test_haproxy_send_proxy_v2_real_client_address_is_checked_logged_and_stored(
    upstream: RecordingUpstream,
) -> None:
    # HAProxy claims 192.0.2.10 (inside allowed_networks) on one port and
    # 198.51.100.7 (outside) on the other; ccguard itself only sees 127.0.0.1.
    log = LogCapture()
    settings = settings_for(upstream.port, smtp=behind_proxy(upstream), policy={"rules": HOLD})
    inside, outside = free_port(), free_port()
    fronts = [
        Frontend(inside, set_src="192.0.2.10", check=True),
        Frontend(outside, set_src="198.51.100.7"),
    ]
    async with running_relay(settings, log) as relay:
        with running_haproxy(fronts, relay.smtp_port):
            refused_rcpts = await asyncio.to_thread(send, inside)
            held = await asyncio.to_thread(send, inside, LEAK)
            with pytest.raises(smtplib.SMTPConnectError) as err:
                await asyncio.to_thread(send, outside)
        page = await relay.store.list()
        network_refusals = refused(relay, "ccguard_smtp_connections_refused", "network")
    assert refused_rcpts == {} and held == {}
    assert err.value.smtp_code == 554
    assert err.value.smtp_error == b"5.7.1 Access denied: client network not allowed to relay"
    assert len(upstream.messages) == 1
    assert b"Received: from " in upstream.messages[0].data
    assert b"([192.0.2.10])\r\n\tby ccguard.test" in upstream.messages[0].data
    assert [m.client_ip for m in page.items] == ["192.0.2.10"]
    lines = [e for e in log.events() if e.get("event") == "transaction"]
    assert {e["client_ip"] for e in lines} == {"192.0.2.10"}
    refusals = [e for e in log.events() if e.get("event") == "client refused"]
    assert [(e["client_ip"], e["reason"]) for e in refusals] == [("198.51.100.7", "network")]
    assert network_refusals == 1


async def test_load_balancer_health_check_is_greeted_without_counting_as_a_refusal(
    upstream: RecordingUpstream,
) -> None:
    # The exact bytes HAProxy 2.6 sends for `check` with send-proxy-v2: a v2 LOCAL
    # header with no addresses.  127.0.0.1 is not in allowed_networks.
    local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"

    def check(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(local)
            greeting = sock.recv(4096)
            sock.sendall(b"QUIT\r\n")
            return greeting

    settings = settings_for(upstream.port, smtp=behind_proxy(upstream))
    async with running_relay(settings) as relay:
        greeting = await asyncio.to_thread(check, relay.smtp_port)
        network = refused(relay, "ccguard_smtp_connections_refused", "network")
        proxy = refused(relay, "ccguard_smtp_connections_refused", "proxy")
    assert greeting == b"220 ccguard.test ESMTP ccguard\r\n"
    assert network == 0 and proxy == 0


async def test_health_check_never_relays_even_when_the_proxy_is_an_allowed_network(
    upstream: RecordingUpstream,
) -> None:
    # One 127.0.0.0/8 for the clients and the load balancer: a header naming no
    # client (v2 LOCAL, v1 UNKNOWN) would make the proxy itself the relaying client.
    headers = [b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00", b"PROXY UNKNOWN\r\n"]

    def health_check(port: int, header: bytes) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(header)
            replies = [read_reply(sock)]
            for line in (b"EHLO lb.example.org", b"MAIL FROM:<s@example.org>",
                         b"RCPT TO:<victim@example.com>", b"QUIT"):  # fmt: skip
                sock.sendall(line + b"\r\n")
                replies.append(read_reply(sock).rsplit(b"\r\n", 2)[-2])
            return replies

    log = LogCapture()
    smtp = behind_proxy(upstream, allowed_networks=["127.0.0.0/8"])
    async with running_relay(settings_for(upstream.port, smtp=smtp), log) as relay:
        runs = [await asyncio.to_thread(health_check, relay.smtp_port, h) for h in headers]
    refusal = b"550 5.7.1 Relaying denied: a load balancer health check (PROXY LOCAL) sends no mail"
    for replies in runs:
        assert replies[0] == b"220 ccguard.test ESMTP ccguard\r\n"
        assert replies[2:4] == [refusal, b"503 Error: need MAIL command"], replies
    assert upstream.messages == [] and upstream.connections == 0
    warnings = [e for e in log.events() if e["event"] == "proxy_trusted overlaps allowed_networks"]
    assert [(e["level"], e["networks"]) for e in warnings] == [("warning", ["127.0.0.1/32"])]


async def test_without_proxy_header_the_connection_is_closed(upstream: RecordingUpstream) -> None:
    settings = settings_for(upstream.port, smtp=behind_proxy(upstream))
    async with running_relay(settings) as relay:
        # A plain SMTP client talking straight to ccguard, from the trusted address.
        got = await asyncio.to_thread(closed_unanswered, relay.smtp_port, b"EHLO x.example.org\r\n")
        invalid = refused(relay, "ccguard_smtp_proxy_header_failures", "invalid")
        hung_up = hangups(relay)
    assert got == b""  # not even a greeting
    assert invalid == 1 and hung_up == 0
    assert upstream.connections == 0


async def test_silent_connection_is_closed_after_proxy_timeout(upstream: RecordingUpstream) -> None:
    settings = settings_for(upstream.port, smtp=behind_proxy(upstream, proxy_timeout=3))
    async with running_relay(settings) as relay:
        got = await asyncio.to_thread(closed_unanswered, relay.smtp_port, b"")
        timeouts = refused(relay, "ccguard_smtp_proxy_header_failures", "timeout")
        hung_up = hangups(relay)
    assert got == b"" and timeouts == 1 and hung_up == 0


async def test_header_from_untrusted_peer_is_closed_unread(upstream: RecordingUpstream) -> None:
    settings = settings_for(
        upstream.port, smtp=behind_proxy(upstream, proxy_trusted=["192.0.2.1/32"])
    )
    async with running_relay(settings) as relay:
        got = await asyncio.to_thread(closed_unanswered, relay.smtp_port, v1("192.0.2.10"))
        untrusted = refused(relay, "ccguard_smtp_proxy_header_failures", "untrusted_peer")
        hung_up = hangups(relay)
    assert got == b"" and untrusted == 1 and hung_up == 0


async def test_v1_header_limits_count_the_real_client(upstream: RecordingUpstream) -> None:
    # One proxy address, many clients behind it: the per-IP limit is per real client.
    settings = settings_for(
        upstream.port,
        smtp=behind_proxy(upstream),
        limits={"max_connections_per_ip": 1},
    )

    def talk(port: int) -> tuple[int, int, dict[str, tuple[int, bytes]]]:
        with ProxiedSMTP(v1("192.0.2.5"), "127.0.0.1", port) as first:
            first_code = first.noop()[0]
            with pytest.raises(smtplib.SMTPConnectError) as err:
                ProxiedSMTP(v1("192.0.2.5"), "127.0.0.1", port)
            with ProxiedSMTP(v1("192.0.2.6"), "127.0.0.1", port) as other:
                sent = other.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)
            return first_code, err.value.smtp_code, sent

    async with running_relay(settings) as relay:
        first_code, over_code, sent = await asyncio.to_thread(talk, relay.smtp_port)
        per_ip = refused(relay, "ccguard_smtp_connections_refused", "max_connections_per_ip")
    assert (first_code, over_code, sent) == (250, 421, {})
    assert per_ip == 1
    assert b"([192.0.2.6])" in upstream.messages[0].data


def test_readme_haproxy_config_is_accepted_by_haproxy(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = re.search(r"# /etc/haproxy/haproxy.cfg\n(.*?)\n *```", readme, re.S)
    assert found is not None
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(textwrap.dedent(found.group(1)) + "\n")
    check = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, timeout=30)
    assert check.returncode == 0, check.stderr.decode()
    assert "send-proxy-v2" in cfg.read_text()


async def test_early_talker_behind_the_proxy_is_refused(upstream: RecordingUpstream) -> None:
    # The pregreet test starts after the header: HAProxy sends the header and the
    # client's bytes together, and only the client's early bytes count.
    settings = settings_for(
        upstream.port, smtp=behind_proxy(upstream), limits={"pregreet_wait": 1.0}
    )
    early = v1("192.0.2.10") + b"EHLO spam.example.net\r\n"
    async with running_relay(settings) as relay:
        got = await asyncio.to_thread(closed_unanswered, relay.smtp_port, early)
        served = await asyncio.to_thread(
            lambda: ProxiedSMTP(v1("192.0.2.11"), "127.0.0.1", relay.smtp_port).quit()
        )
    assert got == (
        b"220-ccguard.test ESMTP ccguard\r\n"
        b"554 5.5.0 Protocol error: client sent data before the greeting\r\n"
    )
    assert served[0] == 221
