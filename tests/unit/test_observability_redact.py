"""Addresses become keyed hashes that correlate but do not reveal."""

from __future__ import annotations

import re

from relay.observability.redact import Redactor
from relay.settings import LoggingSettings

TOKEN = re.compile(r"^h:[0-9a-f]{16}$")


def test_hash_is_prefixed_short_and_hides_the_address() -> None:
    token = Redactor("k1").address("alice@example.org")
    assert TOKEN.match(token)
    assert "alice" not in token and "example" not in token


def test_same_address_however_cased_or_bracketed_hashes_the_same() -> None:
    redactor = Redactor("k1")
    forms = [
        "alice@example.org",
        "alice@" + "example.org".upper(),
        "<Alice@" + "example.org".title() + ">",
        " alice@example.org. ",
    ]
    assert len({redactor.address(a) for a in forms}) == 1


def test_idna_domain_forms_hash_the_same() -> None:
    redactor = Redactor(b"k1")
    assert redactor.address("ana@bücher.example.org") == redactor.address(
        "ana@xn--bcher-kva.example.org"
    )


def test_different_keys_and_different_addresses_give_different_hashes() -> None:
    assert Redactor("k1").address("alice@example.org") != Redactor("k2").address(
        "alice@example.org"
    )
    redactor = Redactor("k1")
    assert redactor.address("alice@example.org") != redactor.address("bob@example.org")


def test_null_sender_and_domain() -> None:
    redactor = Redactor("k1")
    assert redactor.address("") == "<>"
    assert redactor.address("<>") == "<>"
    assert redactor.domain("Alice@" + "example".title() + "." + "org".upper()) == "example.org"
    assert redactor.domain("no-at-sign") == ""


def test_list_gives_count_and_distinct_hashes_up_to_a_limit() -> None:
    redactor = Redactor("k1")
    addrs = [f"user{i}@example.net" for i in range(30)] + ["USER0@example.net"]
    count, hashes = redactor.addresses(addrs, limit=5)
    assert count == 31
    assert hashes == [redactor.address(a) for a in addrs[:5]]
    assert redactor.addresses(["a@example.com", "A@" + "example.com".upper()]) == (
        2,
        [redactor.address("a@example.com")],
    )


def test_scrub_replaces_every_address_looking_string() -> None:
    redactor = Redactor("k1")
    text = (
        'To: "Ann" <ann@example.org>, bob.smith+x@sub.example.com; '
        '"odd name"@example.net GET /q?who=carol%40example.org&page=2'
    )
    scrubbed = redactor.scrub(text)
    assert "@" not in scrubbed and "%40" not in scrubbed
    for person in ("ann", "bob.smith", "odd name", "carol"):
        assert person not in scrubbed
    assert redactor.address("ann@example.org") in scrubbed
    assert redactor.address("carol@example.org") in scrubbed
    assert scrubbed.startswith('To: "Ann" <h:') and "&page=2" in scrubbed


def test_scrub_leaves_text_without_addresses_alone() -> None:
    text = "queue id 4F2A, 250 2.0.0 OK, user@localhost, @example.org"
    assert Redactor("k1").scrub(text) == text


def test_from_settings_uses_configured_key_or_an_ephemeral_one() -> None:
    configured = Redactor.from_settings(LoggingSettings(hash_key="secret"))
    assert not configured.ephemeral
    assert configured.address("a@example.org") == Redactor("secret").address("a@example.org")
    first = Redactor.from_settings(LoggingSettings())
    second = Redactor.from_settings(LoggingSettings())
    assert first.ephemeral and second.ephemeral
    assert first.address("a@example.org") != second.address("a@example.org")
