"""The limit counters and the PROXY client address, without a network."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from aiosmtpd.proxy_protocol import AF, PROTO, V2_CMD, ProxyData
from aiosmtpd.smtp import LoginPassword, Session

from relay import codes
from relay.errors import ConfigError
from relay.settings import LimitsSettings, load_settings
from relay.smtp.auth import session_user
from relay.smtp.limits import (
    ConnectionLimits,
    ErrorCount,
    MessageRate,
    ReplyKind,
    unmarked_kind,
)
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


def _wire(reply: codes.Reply) -> bytes:
    return str(reply).encode()


def test_unmarked_replies_5xx_are_the_clients_faults_4xx_are_not() -> None:
    # Unmarked: aiosmtpd's own answers and ccguard's front-door checks.
    theirs = [b'500 Error: command "FOO" not recognized', b"503 Error: need MAIL command"]
    theirs += [_wire(codes.AUTH_REQUIRED), _wire(codes.AUTH_INVALID), _wire(codes.LINE_TOO_LONG)]
    ours = [_wire(codes.INSUFFICIENT_STORAGE), _wire(codes.AUTH_BUSY), b"250 OK"]
    assert {unmarked_kind(r) for r in theirs} == {ReplyKind.FAULT}
    assert {unmarked_kind(r) for r in ours} == {ReplyKind.NOT_THE_CLIENTS}


def test_a_marked_reply_counts_by_its_kind_not_its_code() -> None:
    count = ErrorCount(LimitsSettings(soft_error_limit=0, hard_error_limit=2))
    count.command("RCPT", junk=False)
    count.mark(ReplyKind.NOT_THE_CLIENTS)  # the upstream's 550, passed on
    assert count.reply(b"550 5.1.1 No such user") == 0.0 and count.errors == 0
    count.command("DATA", junk=False)
    count.mark(ReplyKind.NOT_THE_CLIENTS)  # a policy reject
    assert count.reply(b"550 5.7.1 Refused") == 0.0 and count.errors == 0
    count.command("MAIL", junk=False)
    count.mark(ReplyKind.FAULT)  # the rate limit: a 4xx, yet the client's
    count.reply(_wire(codes.RATE_LIMITED))
    count.command("NOOP", junk=True)
    count.reply(b"250 OK")  # the mark was for one reply only
    assert count.errors == 1


def test_error_count_soft_hard_junk_and_the_reset_at_an_accepted_message() -> None:
    settings = LimitsSettings(
        soft_error_limit=2, error_sleep=0.5, hard_error_limit=4, junk_command_limit=1
    )
    count = ErrorCount(settings)
    error = b"503 Error: need MAIL command"
    assert [count.reply(error) for _ in range(3)] == [0.0, 0.0, 0.5]
    assert count.reply(b"250 OK") == 0.0 and not count.exhausted
    count.command("NOOP", junk=True)
    assert count.reply(b"250 OK") == 0.0  # the first junk command is within the limit
    count.command("NOOP", junk=True)
    assert count.reply(b"250 OK") == 0.5 and count.exhausted
    count.mark(ReplyKind.ACCEPTED)
    assert count.reply(b"250 2.0.0 Ok: queued") == 0.0
    assert count.errors == 0 and not count.exhausted
    count.command("NOOP", junk=True)
    assert count.reply(b"250 OK") == 0.0 and count.errors == 0  # the junk count restarted too


def test_too_many_recipients_count_only_beyond_the_overshoot_of_one_transaction() -> None:
    count = ErrorCount(LimitsSettings(soft_error_limit=0, recipient_overshoot_limit=3))

    def too_many(times: int) -> None:
        for _ in range(times):
            count.command("RCPT", junk=False)
            count.mark(ReplyKind.OVER_MAX_RECIPIENTS)
            count.reply(_wire(codes.TOO_MANY_RECIPIENTS))

    too_many(3)
    assert count.errors == 0
    too_many(2)
    assert count.errors == 2
    count.command("MAIL", junk=False)  # a new transaction has its own overshoot
    too_many(3)
    assert count.errors == 2


def test_error_limits_of_zero_are_off() -> None:
    count = ErrorCount(LimitsSettings(soft_error_limit=0, hard_error_limit=0, junk_command_limit=0))
    assert {count.reply(b"500 Error: bad syntax") for _ in range(1000)} == {0.0}
    for _ in range(1000):
        count.command("NOOP", junk=True)
        count.reply(b"250 OK")
    assert not count.exhausted


def test_an_error_sleep_as_long_as_the_idle_timeout_is_refused_at_load(tmp_path: Path) -> None:
    config = tmp_path / "ccguard.toml"
    config.write_text("[smtp]\nidle_timeout = 5.0\n[limits]\nerror_sleep = 5.0\n")
    with pytest.raises(ConfigError, match=r"error_sleep \(5.0 s\) must be shorter than"):
        load_settings(config)
    config.write_text("[smtp]\nidle_timeout = 5.0\n[limits]\nerror_sleep = 4.0\n")
    assert load_settings(config).limits.error_sleep == 4.0


def test_session_user_from_aiosmtpd_session() -> None:
    session = Session(asyncio.new_event_loop())
    try:
        assert session_user(session) is None
        session.auth_data = LoginPassword(b"app1", b"secret")
        assert session_user(session) is None  # not authenticated (yet)
        session.authenticated = True
        assert session_user(session) is None  # raw credentials: not a login ccguard checked
        session.auth_data = "app2"  # what SmtpAuthenticator.check leaves there
        assert session_user(session) == "app2"
        assert session_user(None) is None
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
