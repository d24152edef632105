"""Login throttling by client network and by a global failure budget (clock passed in)."""

from __future__ import annotations

import pytest

from relay.credentials.throttle import LoginThrottle, client_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    "ip, key",
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", "2001:db8:1:2::/64"),
        ("[2001:db8:1:2::1]", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("not an address", "not an address"),
    ],
)
def test_client_key(ip: str, key: str) -> None:
    assert client_key(ip) == key


def test_an_ipv6_client_is_throttled_by_its_64_whatever_address_it_picks() -> None:
    throttle = LoginThrottle(free=3, clock=Clock())
    for host in range(1, 4):  # three addresses, one guess each, in one /64
        assert throttle.wait_for(f"2001:db8:1:2::{host:x}", "alice") == 0
        throttle.failure(f"2001:db8:1:2::{host:x}", "bob")
    assert throttle.wait_for("2001:db8:1:2:ffff::1", "carol") > 0  # same /64: held back
    assert throttle.wait_for("2001:db8:1:3::1", "carol") == 0  # the next /64: not


async def test_attempts_from_one_64_are_serialised() -> None:
    throttle = LoginThrottle()
    async with throttle.serialised("2001:db8:1:2::1"):
        assert len(throttle._locks) == 1
        async with throttle.serialised("2001:db8:1:3::1"):  # another /64: its own lock
            assert len(throttle._locks) == 2


def test_the_global_budget_holds_everyone_back_for_the_rest_of_the_minute() -> None:
    clock = Clock()
    throttle = LoginThrottle(free=1000, global_per_minute=5, clock=clock)
    for i in range(5):
        assert throttle.wait_for(f"192.0.2.{i}", "app1") == 0
        throttle.failure(f"192.0.2.{i}", "app1")
        clock.now += 1
    # A clean client, any user: held back until the oldest failure is 60 s old.
    assert throttle.wait_for("198.51.100.1", "app2") == pytest.approx(55.0)
    clock.now += 55
    assert throttle.wait_for("198.51.100.1", "app2") == 0
    assert len(throttle._recent or ()) == 5  # bounded: only the last five are kept


def test_without_a_global_budget_clean_clients_are_never_held_back() -> None:
    throttle = LoginThrottle(free=1000, clock=Clock())
    for i in range(500):
        throttle.failure(f"192.0.2.{i % 250}", f"user{i}")
    assert throttle.wait_for("198.51.100.1", "app2") == 0
