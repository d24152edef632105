"""The suite-wide log privacy check can fail: it finds what a leak looks like."""

from tests.helpers.privacy import clear_addresses


def test_finds_clear_addresses_and_ignores_hashes_and_domains() -> None:
    line = '{"event": "x", "sender": "alice@example.org", "to": "Zoë <zoë@bücher.example.com>"}'
    assert clear_addresses(line) == ["alice@example.org", "zoë@bücher.example.com"]
    assert clear_addresses("to postmaster@localhost and u@[192.0.2.1]") == [
        "postmaster@localhost",
        "u@[192.0.2.1]",
    ]
    safe = '{"sender": "h:3f9a0c1d2e3f4a5b", "domain": "*@example.com", "rcpt": "example.net"}'
    assert clear_addresses(safe) == []
