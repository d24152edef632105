"""The chunked DATA payload is byte-for-byte what aiosmtplib would have sent whole."""

from __future__ import annotations

from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.upstream.stream import wire_chunks

# Lines made of the characters that matter: dots, bare CR, bare LF, CRLF.
_TEXT = st.lists(st.sampled_from([b".", b"a", b"\r", b"\n", b"\r\n", b"..", b"x" * 7]))
_MESSAGE = _TEXT.map(b"".join)


def aiosmtplib_payload(message: bytes) -> bytes:
    """What ``aiosmtplib.SMTP.data(message)`` writes after the 354."""
    return PERIOD_REGEX.sub(b"..", normalize_message_line_endings(message)) + b".\r\n"


def joined(pieces: list[bytes | memoryview], chunk: int) -> bytes:
    return b"".join(bytes(part) for part in wire_chunks(pieces, chunk))


@settings(max_examples=400, deadline=None)
@given(message=_MESSAGE, chunk=st.integers(min_value=1, max_value=12))
def test_one_piece_in_any_slice_size_is_what_aiosmtplib_sends(message: bytes, chunk: int) -> None:
    assert joined([message], chunk) == aiosmtplib_payload(message)


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(_MESSAGE, min_size=1, max_size=4), chunk=st.integers(1, 12))
def test_pieces_are_sent_as_if_joined(pieces: list[bytes], chunk: int) -> None:
    views: list[bytes | memoryview] = [memoryview(p) if i % 2 else p for i, p in enumerate(pieces)]
    assert joined(views, chunk) == aiosmtplib_payload(b"".join(pieces))


def test_a_clean_message_is_sent_from_views_of_it_without_copies() -> None:
    trace = b"Received: from a by b; now\r\n"
    body = b"Subject: x\r\n\r\n" + b"line of text\r\n" * 1000
    parts = list(wire_chunks([trace, body], chunk=1024))
    assert all(isinstance(part, memoryview) for part in parts[:-1])
    assert parts[-1] == b".\r\n"
    assert max(len(part) for part in parts) <= 1024 + len(b"line of text\r\n")


def test_an_empty_message_gets_an_empty_line_then_the_terminator() -> None:
    assert joined([b""], 8) == aiosmtplib_payload(b"") == b"\r\n.\r\n"
