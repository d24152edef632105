"""Rewrite and split remove what inspection counts outside plain mailboxes:
addresses in display names, comments and group names, and lines of the header
block that belong to no field (after a bare CR or LF, a mangled field name)."""

from __future__ import annotations

import pytest

from relay.actions import plan_split, rewrite_message
from relay.envelope import Envelope
from tests.helpers.actions import MATCHER, exposure_of, field_list, parsed

SHOWING = [
    'To: "a@x1.example.com, b@x2.example.com, c@x3.example.com" <me@example.org>',
    "To: =?utf-8?q?a=40x1=2Eexample=2Ecom=2C_b=40x2=2Eexample=2Ecom?= <me@example.org>",
    "To: me@example.org (a@x1.example.com, b@x2.example.com)",
    'To: "bob@example.org" <me@example.org>',
    'To: "Team a@x1.example.com": me@example.org;',
    "To: me@example.org, (a@x1.example.com)",
]


@pytest.mark.parametrize("line", SHOWING)
def test_addresses_shown_beside_an_internal_mailbox_are_removed(line: str) -> None:
    msg = f"From: ann@example.org\r\n{line}\r\nSubject: s\r\n\r\nbody\r\n".encode()
    assert exposure_of(msg).unparseable > 0
    out = rewrite_message(parsed(msg), MATCHER).message
    assert out == (
        b"X-CCGuard-Action: rewrite\r\nFrom: ann@example.org\r\n"
        b"To: me@example.org\r\nSubject: s\r\n\r\nbody\r\n"
    )
    after = exposure_of(out)
    assert (after.visible_external, after.visible_internal) == (0, 1)


def test_own_address_in_the_display_name_is_kept_as_written() -> None:
    msg = b'To: "me@example.org" <me@example.org>, x@example.com\r\n\r\n'
    out = rewrite_message(parsed(msg), MATCHER).message
    assert b'\r\nTo: "me@example.org" <me@example.org>\r\n' in out


JUNK = [
    # (header lines, what rewrite leaves of the To field)
    (b"To: a@x1.example.com\r, b@x2.example.com\r, c@x3.example.com\r\n",
     b"To: undisclosed-recipients:;\r\n"),
    (b"To: undisclosed-recipients:;\r, b@x2.example.com\r, c@x3.example.com\r\n",
     b"To: undisclosed-recipients:;\r\n"),
    (b"To: me@example.org\n, b@example.net\r\n", b"To: me@example.org\r\n"),
    (b"To\x00: x@example.com,\r\n y@example.net\r\nTo: me@example.org\r\n",
     b"To: me@example.org\r\n"),
]  # fmt: skip


@pytest.mark.parametrize(("lines", "to_left"), JUNK)
def test_lines_outside_any_field_that_show_addresses_are_dropped(
    lines: bytes, to_left: bytes
) -> None:
    msg = b"From: ann@example.org\r\n" + lines + b"Subject: s\r\n\r\nbody\r\n"
    assert exposure_of(msg).unparseable > 0
    result = rewrite_message(parsed(msg), MATCHER)
    out = result.message
    assert out == b"X-CCGuard-Action: rewrite\r\nFrom: ann@example.org\r\n" + (
        to_left + b"Subject: s\r\n\r\nbody\r\n"
    )
    assert exposure_of(out).visible_external == 0
    assert result.removed >= 1


def test_junk_lines_without_addresses_stay() -> None:
    msg = b"To: a@example.com\r\nnot a field\r\nSubject: s\r\n\r\nbody"
    out = rewrite_message(parsed(msg), MATCHER).message
    assert b"\r\nnot a field\r\nSubject: s\r\n\r\nbody" in out


@pytest.mark.parametrize(
    "head",
    [
        b"To: me@example.org\r, b@example.net\r\n\r\n",
        b"To: me@example.org\n, b@example.net\r\n\r\n",
        b"To: me@example.org\r, b@example.net\n\n",
    ],
)
def test_dropping_the_last_line_keeps_the_body_the_body(head: bytes) -> None:
    msg = head + b"Cc: body@example.com\r\n"
    out = rewrite_message(parsed(msg), MATCHER).message
    assert out.endswith(b"\r\n\r\nCc: body@example.com\r\n")
    assert b"b@example.net" not in out
    after = exposure_of(out)
    assert (after.visible_external, after.visible_internal) == (0, 1)


def test_split_copies_drop_junk_and_names_showing_others() -> None:
    msg = (
        b'To: "c@example.net" <g1@example.com>, me@example.org\r, g2@example.net\r\n'
        b"Subject: s\r\n\r\nbody\r\n"
    )
    env = Envelope("ann@example.org", ("g1@example.com", "me@example.org"))
    external, internal = plan_split(parsed(msg), env, MATCHER)
    assert field_list(external.message)[1] == ("to", b" g1@example.com\r\n")
    assert b"example.net" not in external.message
    assert exposure_of(external.message).external_addresses == ("g1@example.com",)
    assert b"example.net" not in internal.message
    assert exposure_of(internal.message).visible_external == 0
