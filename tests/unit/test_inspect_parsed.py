"""The one parsed message: line-ending normalisation and the cut into fields."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.inspect import DomainMatcher, inspect_message, normalise_line_endings, parse_message
from relay.inspect.headers import iter_raw_fields

BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")
# Mostly line-ending bytes, so runs like "\r\r\n", "\n\r" and "\r\n\n" come up often.
messy = st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"a", b" ", b":", b"To", b"\x00", b"\xff"]),
    max_size=60,
).map(b"".join)


@settings(max_examples=500)
@given(messy)
def test_normalised_bytes_have_no_bare_cr_or_lf(data: bytes) -> None:
    out = normalise_line_endings(data)
    assert BARE.search(out) is None
    assert out.count(b"\r") == out.count(b"\n") == out.count(b"\r\n")


@settings(max_examples=500)
@given(messy)
def test_normalising_is_idempotent_and_keeps_every_line(data: bytes) -> None:
    out = normalise_line_endings(data)
    assert normalise_line_endings(out) is out
    # bytes.splitlines (what the upstream client and most readers split on)
    # sees the very same lines before and after.
    assert out.splitlines() == data.splitlines()


@given(st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))))
def test_clean_bytes_come_back_as_the_same_object(lines: list[bytes]) -> None:
    data = b"\r\n".join(lines) + b"\r\n"
    assert normalise_line_endings(data) is data
    assert parse_message(data).data is data
    assert not parse_message(data).normalised


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (b"a\rb", b"a\r\nb"),
        (b"a\nb", b"a\r\nb"),
        (b"a\r\r\nb", b"a\r\n\r\nb"),
        (b"a\n\r\nb", b"a\r\n\r\nb"),
        (b"a\n\rb", b"a\r\n\r\nb"),
        (b"\r", b"\r\n"),
        (b"", b""),
    ],
)
def test_each_bare_ending_becomes_one_crlf(raw: bytes, normal: bytes) -> None:
    assert normalise_line_endings(raw) == normal


@settings(max_examples=500)
@given(messy)
def test_the_parse_is_lossless_and_agrees_with_the_line_splitting(data: bytes) -> None:
    message = parse_message(data)
    assert message.normalised == (message.data != data)
    head = b"".join(f.raw for f in message.fields)
    assert head + message.separator + message.body == message.data
    assert message.separator in (b"", b"\r\n")
    if message.separator:
        # The header block ends at the first blank line, and nowhere else.
        assert (head + message.separator).endswith(b"\r\n\r\n") or head == b""
        assert b"\r\n\r\n" not in head
    for field in message.fields:
        assert list(iter_raw_fields(field.raw)) == [(field.name, field.raw)]


def test_lf_lines_then_a_crlf_blank_line_end_the_header_block() -> None:
    message = parse_message(b"To: a@example.org\nSubject: s\n\r\nCc: x@example.com\r\n")
    assert [f.name for f in message.fields] == ["To", "Subject"]
    assert message.body == b"Cc: x@example.com\r\n"
    exposure = inspect_message(message, DomainMatcher(["example.org"]), max_header_bytes=999)
    assert (exposure.visible_internal, exposure.visible_external) == (1, 0)


def test_a_bare_cr_starts_a_new_field() -> None:
    message = parse_message(b"Subject: x\rX-CCGuard-Action: pass\r\n\r\n")
    assert [f.name for f in message.fields] == ["Subject", "X-CCGuard-Action"]


def test_the_cap_counts_normalised_bytes_and_cuts_a_field_where_it_crosses() -> None:
    message = parse_message(b"To: a@example.com,\n b@example.com\n\n")
    assert len(message.data) == 38 and not message.header_too_large(38)
    assert message.header_too_large(37)
    assert [f.raw for f in message.fields_within(21)] == [b"To: a@example.com,\r\n "]
    assert list(message.fields_within(0)) == []


def test_without_first_field_keeps_the_rest_intact() -> None:
    message = parse_message(b"Received: x\r\n y\r\nTo: a\r\n\r\nbody")
    rest = message.without_first_field()
    assert rest.data == b"To: a\r\n\r\nbody"
    assert [f.name for f in rest.fields] == ["To"] and rest.body == b"body"
    assert message.values("to") == [b" a\r\n"]
