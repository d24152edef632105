"""Calendar parts hidden by MIME syntax: comments, duplicate fields,
message/global, TNEF (pure)."""

from __future__ import annotations

import base64

import pytest

from relay.inspect import CalendarLimits, DomainMatcher, Exposure, inspect_message
from relay.inspect.syntax import strip_comments
from tests.helpers.calendar import attendee_lines, ics, invitation, multipart, part

MATCHER = DomainMatcher(["example.org"])
ICS = ics(attendee_lines(4))


def _inspect(message: bytes) -> Exposure:
    return inspect_message(
        message, MATCHER, max_header_bytes=1 << 20, calendar_limits=CalendarLimits()
    )


def _entity(head: str, body: str) -> bytes:
    return (head + "\r\n").encode() + body.encode()


@pytest.mark.parametrize(
    "value, expected",
    [
        ("text/calendar (invite); method=REQUEST", "text/calendar  ; method=REQUEST"),
        ("a (b (c) d) e", "a   e"),
        ('x; name="a(b).ics"', 'x; name="a(b).ics"'),  # not in a quoted string
        ('x; name="a\\"(" (c)', 'x; name="a\\"("  '),
        (r"t (a \) b) u", "t   u"),  # a quoted pair inside a comment
        ("text/plain (unclosed", "text/plain "),
    ],
)
def test_strip_comments(value: str, expected: str) -> None:
    assert strip_comments(value) == expected


def test_strip_comments_removes_deep_nesting_whole() -> None:
    # One pass with a depth counter (no re-scan per comment, no recursion).
    assert strip_comments("x" + "(" * 500_000 + ")" * 500_000 + "y") == "x y"


@pytest.mark.parametrize(
    "ctype",
    [
        "text/calendar (x); method=REQUEST",
        "(a comment first) text/calendar",
        "text/calendar(no blank)",
        "text (the type) / calendar",
    ],
)
def test_a_comment_in_a_parts_content_type_does_not_hide_the_calendar(ctype: str) -> None:
    mixed = multipart("mixed", "BB", [part("hello", "text/plain"), part(ICS, ctype)])
    exposure = _inspect(invitation(mixed))
    assert exposure.calendar is True and exposure.calendar_attendees_external == 4


def test_a_comment_in_the_top_level_content_type_does_not_hide_the_calendar() -> None:
    exposure = _inspect(invitation(part(ICS, "text/calendar (x); method=REQUEST")))
    assert exposure.calendar_attendees_external == 4


def test_a_comment_before_the_boundary_parameter_does_not_hide_the_parts() -> None:
    inner = multipart("mixed", "BB", [part(ICS)])
    inner = inner.replace(b"multipart/mixed; boundary=", b"multipart/mixed; (c) boundary=", 1)
    assert _inspect(invitation(inner)).calendar_attendees_external == 4


@pytest.mark.parametrize(
    "order", [("text/plain", "text/calendar"), ("text/calendar", "text/plain")]
)
def test_a_duplicated_part_content_type_is_read_as_the_calendar(order: tuple[str, str]) -> None:
    head = "".join(f"Content-Type: {ctype}\r\n" for ctype in order)
    mixed = multipart("mixed", "BB", [part("hello", "text/plain"), _entity(head, ICS)])
    exposure = _inspect(invitation(mixed))
    assert exposure.calendar is True and exposure.calendar_attendees_external == 4


def test_a_duplicated_top_level_content_type_is_walked_as_the_multipart() -> None:
    body = multipart("mixed", "BB", [part(ICS)])
    message = invitation(b"Content-Type: text/plain\r\n" + body)
    assert _inspect(message).calendar_attendees_external == 4


def test_two_different_multipart_content_types_are_not_guessed_between() -> None:
    body = multipart("mixed", "BB", [part(ICS)])
    two = invitation(b'Content-Type: multipart/mixed; boundary="CC"\r\n' + body)
    assert _inspect(two).calendar_truncated is True
    plain = multipart("mixed", "BB", [part("no calendar here", "text/plain")])
    harmless = invitation(b'Content-Type: multipart/mixed; boundary="CC"\r\n' + plain)
    exposure = _inspect(harmless)
    assert exposure.calendar_truncated is False and exposure.calendar is False


def test_a_duplicated_content_disposition_keeps_the_ics_name() -> None:
    head = (
        "Content-Type: application/octet-stream\r\n"
        "Content-Disposition: attachment; filename=notes.txt\r\n"
        'Content-Disposition: attachment; filename="invite.ics"\r\n'
    )
    mixed = multipart("mixed", "BB", [_entity(head, ICS)])
    assert _inspect(invitation(mixed)).calendar_attendees_external == 4


def test_message_global_is_walked_like_message_rfc822() -> None:
    inner = b"Subject: fw\r\nMIME-Version: 1.0\r\n" + part(ICS)
    mixed = multipart(
        "mixed",
        "BB",
        [part("see below", "text/plain"), b"Content-Type: message/global\r\n\r\n" + inner],
    )
    assert _inspect(invitation(mixed)).calendar_attendees_external == 4
    top = invitation(b"Content-Type: message/global\r\n\r\n" + inner)
    assert _inspect(top).calendar_attendees_external == 4


def _tnef(payload: bytes, ctype: str = "application/ms-tnef; name=winmail.dat") -> bytes:
    blob = b"\x78\x9f\x3e\x22\x01\x00" + payload + b"\x00" * 64
    body = base64.encodebytes(blob).decode().replace("\n", "\r\n")
    head = f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: base64\r\n"
    return invitation(multipart("mixed", "BB", [part("hello", "text/plain"), _entity(head, body)]))


@pytest.mark.parametrize(
    "payload",
    [
        b"\x07\x80IPM.Schedule.Meeting.Request\x00",
        "IPM.Schedule.Meeting.Request".encode("utf-16-le"),
        ICS.encode(),
    ],
)
def test_a_tnef_meeting_request_or_calendar_is_flagged_unreadable(payload: bytes) -> None:
    exposure = _inspect(_tnef(payload))
    assert exposure.calendar_truncated is True
    named = _inspect(_tnef(payload, 'application/octet-stream; name="winmail.dat"'))
    assert named.calendar_truncated is True


def test_an_ordinary_tnef_attachment_is_not_a_calendar() -> None:
    exposure = _inspect(_tnef(b"\x07\x80IPM.Note\x00 just rich text"))
    assert exposure.calendar is False and exposure.calendar_truncated is False
