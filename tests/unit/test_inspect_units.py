"""Domain matching, normalisation, header block splitting and the size cap."""

from __future__ import annotations

import pytest

from relay.inspect import (
    DomainMatcher,
    inspect_message,
    normalise_address,
    normalise_domain,
    parse_address_header,
    split_header_block,
)


@pytest.mark.parametrize(
    ("domain", "internal"),
    [
        ("example.org", True),
        ("EXAMPLE.ORG.", True),
        ("a.example.net", True),
        ("a.b.example.net", True),
        ("example.net", False),
        ("badexample.net", False),
        ("sub.example.org", False),
        ("bücher.example", True),
        ("XN--BCHER-KVA.EXAMPLE", True),
        ("x.bücher.example", False),
        ("", False),
        ("[192.0.2.1]", False),
    ],
)
def test_domain_matcher(domain: str, internal: bool) -> None:
    matcher = DomainMatcher(["example.org", "*.example.net", "xn--bcher-kva.example"])
    assert matcher.is_internal(domain) is internal


def test_internal_address_needs_a_domain() -> None:
    matcher = DomainMatcher(["example.org"])
    assert matcher.is_internal_address("Alice@" + "example.org".title())
    assert not matcher.is_internal_address("example.org")
    assert not matcher.is_internal_address("@example.org")
    assert not matcher.is_internal_address("a@example.org.evil.example.com")


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Alice@" + "example".upper() + ".com", "Alice@example.com"),
        ('"alice"@example.com', "alice@example.com"),
        ('"a b"@example.com', '"a b"@example.com'),
        ('"a\\"b"@example.com', '"a\\"b"@example.com'),
        ("x@bücher.example", "x@xn--bcher-kva.example"),
        ("u@[ 192.0.2.1 ]", "u@[192.0.2.1]"),
        ("nodomain", "nodomain"),
    ],
)
def test_normalise_address(raw: str, normal: str) -> None:
    assert normalise_address(raw) == normal


def test_idna_refusal_falls_back_per_label() -> None:
    assert normalise_domain("Bü_cher.EXAMPLE") == normalise_domain("bü_cher.example")
    assert normalise_domain("bü_cher.example").endswith(".example")
    assert normalise_domain("a_b.Example.COM") == "a_b.example.com"


def test_mailbox_source_is_the_original_text() -> None:
    value = (
        '"Doe, Jane" <jd@example.com> (work),\r\n'
        f" Bob <B@{'example'.upper()}.net>, Team: c@example.org;"
    )
    parsed = parse_address_header(value)
    assert [box.source for box in parsed.mailboxes] == [
        '"Doe, Jane" <jd@example.com> (work)',
        "Bob <B@" + "example".upper() + ".net>",
        "c@example.org",
    ]
    assert [box.address for box in parsed.mailboxes] == [
        "jd@example.com",
        "B@example.net",
        "c@example.org",
    ]
    assert [box.domain for box in parsed.mailboxes] == ["example.com", "example.net", "example.org"]


def test_unparseable_parts_are_reported_with_their_text() -> None:
    parsed = parse_address_header("a@example.com, Bob Smith bob@example.net")
    assert parsed.unparseable == ["bob@example.net"]
    assert parsed.unparseable_sources == ["Bob Smith bob@example.net"]


@pytest.mark.parametrize(
    ("message", "head"),
    [
        (b"To: a\r\n\r\nbody\r\n\r\nmore", b"To: a\r\n\r\n"),
        (b"To: a\r\nCc: b\r\n", b"To: a\r\nCc: b\r\n"),
        (b"\r\nbody", b"\r\n"),
        (b"", b""),
    ],
)
def test_split_header_block(message: bytes, head: bytes) -> None:
    got_head, body = split_header_block(message)
    assert got_head == head
    assert got_head + body == message


def test_header_over_the_cap_is_flagged_and_still_counted() -> None:
    to = ", ".join(f"u{i}@example.com" for i in range(1000))
    message = f"To: {to}\r\n\r\nbody".encode()
    exposure = inspect_message(message, DomainMatcher([]), max_header_bytes=4096)
    assert exposure.header_too_large
    assert 200 < exposure.visible_external < 1000


def test_header_exactly_at_the_cap_is_not_too_large() -> None:
    message = b"To: a@example.com\r\n\r\n" + b"x" * 10_000
    exposure = inspect_message(message, DomainMatcher([]), max_header_bytes=21)
    assert not exposure.header_too_large
    assert exposure.visible_external == 1
    cut = inspect_message(message, DomainMatcher([]), max_header_bytes=20)
    assert cut.header_too_large


def test_per_header_counts() -> None:
    message = (
        b"To: a@example.com, b@example.com\r\nCc: a@example.com\r\n"
        b"Resent-Cc: c@example.org\r\nBcc: d@example.com\r\n\r\n"
    )
    exposure = inspect_message(message, DomainMatcher(["example.org"]), max_header_bytes=9999)
    assert exposure.per_header == {"to": 2, "cc": 1, "resent-to": 0, "resent-cc": 1}
    assert exposure.counts()["per_header"] == exposure.per_header
    assert "a@example.com" not in repr(exposure.counts())


def test_non_utf8_header_bytes_do_not_break_counting() -> None:
    message = b"To: \xff\xfe Name <a@example.com>, b@ex\xe4mple.com\r\n\r\n"
    exposure = inspect_message(message, DomainMatcher([]), max_header_bytes=9999)
    assert exposure.visible_external == 2
