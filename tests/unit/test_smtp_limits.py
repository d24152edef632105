"""The limit counters and the PROXY client address, without a network."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from aiosmtpd.proxy_protocol import AF, PROTO, V2_CMD, ProxyData
from aiosmtpd.smtp import LoginPassword, Session

from relay.errors import ConfigError
from relay.settings import LimitsSettings, load_settings
from relay.smtp.limits import ConnectionLimits, MessageRate, session_user
from relay.smtp.proxy import ProxyGate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_message_rate_slides_over_one_minute_and_keys_on_the_user() -> None:
    clock = Clock()
    rate = MessageRate(LimitsSettings(messages_per_minute=2), clock)
    assert [rate.allow(None, "192.0.2.1") for _ in range(3)] == [True, True, False]
    # The same IP as an authenticated user has its own budget, and users are apart.
    assert [rate.allow("app1", "192.0.2.1") for _ in range(3)] == [True, True, False]
    assert rate.allow("app2", "192.0.2.1")
    clock.now += 59.9
    assert not rate.allow(None, "192.0.2.1")
    clock.now += 0.2  # the first two have left the window
    assert [rate.allow(None, "192.0.2.1") for _ in range(3)] == [True, True, False]


def test_message_rate_off_by_default_and_exempt_networks() -> None:
    assert all(MessageRate(LimitsSettings()).allow(None, "192.0.2.1") for _ in range(1000))
    rate = MessageRate(LimitsSettings(messages_per_minute=1, rate_exempt_networks=["192.0.2.0/24"]))
    assert all(rate.allow(None, "192.0.2.9") for _ in range(10))
    assert [rate.allow(None, "198.51.100.1") for _ in range(2)] == [True, False]


def test_connection_limits_total_per_ip_and_release() -> None:
    limits = ConnectionLimits(LimitsSettings(max_connections=3, max_connections_per_ip=2))
    assert limits.admit("192.0.2.1") is None and limits.admit("192.0.2.1") is None
    over_ip = limits.admit("192.0.2.1")
    assert over_ip is not None and over_ip[1] == "max_connections_per_ip"
    assert str(over_ip[0]) == "421 4.7.0 Too many connections, try again later"
    assert limits.admit("192.0.2.2") is None
    over_total = limits.admit("192.0.2.3")
    assert over_total is not None and over_total[1] == "max_connections"
    limits.release("192.0.2.1")
    assert limits.admit("192.0.2.3") is None and limits.open == 3


def test_session_user_from_aiosmtpd_session() -> None:
    session = Session(asyncio.new_event_loop())
    try:
        assert session_user(session) is None
        session.auth_data = LoginPassword(b"app1", b"secret")
        assert session_user(session) is None  # not authenticated (yet)
        session.authenticated = True
        assert session_user(session) == "app1"
        session.auth_data = "app2"
        assert session_user(session) == "app2"
    finally:
        session.loop.close()


def _header(**fields: object) -> ProxyData:
    data = ProxyData(version=2)
    for name, value in fields.items():
        setattr(data, name, value)
    return data


def test_proxy_client_address() -> None:
    tcp4 = _header(
        command=V2_CMD.PROXY, family=AF.INET, protocol=PROTO.STREAM,
        src_addr=IPv4Address("192.0.2.10"),
    )  # fmt: skip
    assert ProxyGate.client_ip(tcp4, "10.0.0.1") == "192.0.2.10"
    mapped = _header(
        command=V2_CMD.PROXY, family=AF.INET6, protocol=PROTO.STREAM,
        src_addr=IPv6Address("::ffff:192.0.2.11"),
    )  # fmt: skip
    assert ProxyGate.client_ip(mapped, "10.0.0.1") == "192.0.2.11"
    health_check = _header(command=V2_CMD.LOCAL, family=AF.UNSPEC, protocol=PROTO.UNSPEC)
    assert ProxyGate.client_ip(health_check, "10.0.0.1") == "10.0.0.1"
    unix = _header(command=V2_CMD.PROXY, family=AF.UNIX, protocol=PROTO.STREAM, src_addr=b"/run/x")
    assert ProxyGate.client_ip(unix, "10.0.0.1") is None
    broken = _header(command=V2_CMD.PROXY, family=AF.INET, protocol=PROTO.STREAM, error="bad")
    assert ProxyGate.client_ip(broken, "10.0.0.1") is None
    gate = ProxyGate(["10.0.0.0/8"])
    assert gate.trusts("10.1.2.3") and not gate.trusts("192.0.2.10")


def test_proxy_protocol_needs_trusted_proxies(tmp_path: Path) -> None:
    path = tmp_path / "ccguard.toml"
    path.write_text("[smtp]\nproxy_protocol = true\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "proxy_trusted" in str(err.value)
