"""Calendar invitations: the bounded MIME walk, decoding, parsing and the counts (pure)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.inspect import CalendarLimits, DomainMatcher, Exposure, inspect_message
from relay.inspect.calendar import NO_CALENDAR, find_calendar, parse_calendar, wants_body
from relay.inspect.headers import header_end
from tests.helpers.calendar import attendee_lines, ics, invitation, multipart, part

MATCHER = DomainMatcher(["example.org"])


def _inspect(message: bytes, limits: CalendarLimits | None = None) -> Exposure:
    return inspect_message(
        message, MATCHER, max_header_bytes=1 << 20, calendar_limits=limits or CalendarLimits()
    )


def _plain_invitation(lines: list[str], **kwargs: str | None) -> bytes:
    return invitation(part(ics(lines, **kwargs)))


def test_top_level_text_calendar_counts_every_attendee_and_the_organizer() -> None:
    exposure = _inspect(_plain_invitation(attendee_lines(20)))
    assert exposure.calendar is True
    assert exposure.calendar_attendees_external == 20
    assert exposure.calendar_attendees_internal == 1  # the organiser, alice@example.org
    assert "guest007@example.com" in exposure.calendar_external_addresses
    assert exposure.calendar_internal_addresses == ("alice@example.org",)
    # Visible like To/Cc: bob (To) + 20 guests external, the organiser internal.
    assert (exposure.visible_external, exposure.visible_internal) == (21, 1)
    assert exposure.visible_total == 22
    assert exposure.external_domains == 1
    assert exposure.calendar_methods == ("REQUEST",)
    assert exposure.calendar_truncated is False
    assert exposure.per_header["to"] == 1


def test_attendees_also_in_to_are_counted_once() -> None:
    to = ", ".join(f"guest{i:03d}@example.com" for i in range(5))
    exposure = _inspect(invitation(part(ics(attendee_lines(5))), to=to))
    assert exposure.visible_external == 5
    assert exposure.calendar_attendees_external == 5
    assert exposure.visible_total == 6


def test_nested_multipart_with_base64_calendar() -> None:
    alternative = multipart(
        "alternative",
        "alt-1",
        [
            part("Join us.", "text/plain; charset=UTF-8"),
            part(ics(attendee_lines(7)), encoding="base64"),
        ],
    )
    mixed = multipart(
        "mixed", "mixed-1", [alternative, part("%PDF-1.4 ...", "application/pdf", "base64")]
    )
    exposure = _inspect(invitation(mixed))
    assert exposure.calendar_attendees_external == 7
    assert exposure.visible_external == 8


def test_quoted_printable_calendar_with_long_folded_lines() -> None:
    long_cn = "ATTENDEE;CN=\"A very long display name that forces soft line breaks in QP\";" \
              "ROLE=REQ-PARTICIPANT:mailto:long.name@example.net"  # fmt: skip
    body = ics([long_cn, *attendee_lines(3)])
    exposure = _inspect(invitation(part(body, encoding="quoted-printable")))
    assert "long.name@example.net" in exposure.calendar_external_addresses
    assert exposure.calendar_attendees_external == 4
    assert exposure.calendar_truncated is False


def test_folded_attendee_lines_are_unfolded_even_inside_the_address() -> None:
    lines = [
        'ATTENDEE;CN="Folded Guest";ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:folded.gu\r\n'
        " est@exam\r\n\tple.com",
        "ATTENDEE;CN=Short\r\n :mailto:short@example.net",
    ]
    exposure = _inspect(_plain_invitation(lines))
    assert set(exposure.calendar_external_addresses) == {
        "folded.guest@example.com",
        "short@example.net",
    }


def test_display_names_with_quotes_commas_and_addresses() -> None:
    lines = [
        'ATTENDEE;CN="Doe, Jane":mailto:jane@example.com',
        "ATTENDEE;CN=Bob ^'The Builder^':mailto:bob@example.net",
        'ATTENDEE;CN="shown@example.net":mailto:real@example.com',
        'ATTENDEE;CN="x";EMAIL=uuid.person@example.com:urn:uuid:00000000-0000-0000-0000-000000000001',
        'ATTENDEE;DELEGATED-TO="mailto:d1@example.com","mailto:d2@example.com":mailto:boss@example.org',
    ]
    organizer = (
        'ORGANIZER;CN="Alice";SENT-BY="mailto:assistant@example.org":mailto:alice@example.org'
    )
    exposure = _inspect(_plain_invitation(lines, organizer=organizer))
    assert set(exposure.calendar_external_addresses) == {
        "jane@example.com",
        "bob@example.net",
        "shown@example.net",
        "real@example.com",
        "uuid.person@example.com",
        "d1@example.com",
        "d2@example.com",
    }
    assert set(exposure.calendar_internal_addresses) == {
        "alice@example.org",
        "assistant@example.org",
        "boss@example.org",
    }
    assert exposure.calendar_truncated is False


def test_duplicate_attendees_and_case_and_idna_are_normalised() -> None:
    lines = [
        "ATTENDEE:mailto:guest@" + "example.com".upper(),
        "ATTENDEE:MAILTO:guest@example.com",
        "ATTENDEE;CN=Guest:mailto:guest@example.com",
        "ATTENDEE:mailto:kunde@b\u00fccher.example.com",
        "ATTENDEE:mailto:kunde@xn--bcher-kva.example.com",
        "ATTENDEE:mailto:pct%2Bguest@example.net?subject=x",
    ]
    exposure = _inspect(_plain_invitation(lines, organizer=None))
    assert sorted(exposure.calendar_external_addresses) == [
        "guest@example.com",
        "kunde@xn--bcher-kva.example.com",
        "pct+guest@example.net",
    ]


@pytest.mark.parametrize(
    "method", ["REQUEST", "PUBLISH", "ADD", "CANCEL", "REPLY", "COUNTER", None]
)
def test_every_method_and_none_counts_the_attendees_shown(method: str | None) -> None:
    exposure = _inspect(_plain_invitation(attendee_lines(4), method=method))
    assert exposure.calendar is True
    assert exposure.calendar_attendees_external == 4
    assert exposure.calendar_methods == ((method,) if method else ())


def test_ics_attachments_by_type_or_file_name() -> None:
    body = ics(attendee_lines(3))
    for ctype, extra in [
        ("application/ics", ""),
        ('application/octet-stream; name="invite.ics"', ""),
        ("application/octet-stream", 'Content-Disposition: attachment; filename="Meeting.ICS"\r\n'),
    ]:
        mixed = multipart(
            "mixed", "b", [part("see attached", "text/plain"), part(body, ctype, "base64", extra)]
        )
        exposure = _inspect(invitation(mixed))
        assert exposure.calendar_attendees_external == 3, ctype


def test_forwarded_invitation_inside_message_rfc822_counts() -> None:
    inner = invitation(part(ics(attendee_lines(6))), to="someone@example.net")
    mixed = multipart(
        "mixed", "fwd", [part("FYI", "text/plain"), b"Content-Type: message/rfc822\r\n\r\n" + inner]
    )
    exposure = _inspect(invitation(mixed))
    assert exposure.calendar_attendees_external == 6


def test_calendar_over_the_byte_cap_is_flagged_not_parsed() -> None:
    message = _plain_invitation(attendee_lines(50))
    exposure = _inspect(message, CalendarLimits(max_bytes=1000))
    assert exposure.calendar is True
    assert exposure.calendar_truncated is True
    assert exposure.calendar_attendees_external == 0
    assert _inspect(message, CalendarLimits(max_bytes=100_000)).calendar_attendees_external == 50


def test_the_cap_is_shared_by_all_calendar_parts_of_a_message() -> None:
    body = ics(attendee_lines(10))
    size = len(body.encode())
    mixed = multipart("mixed", "b", [part(body), part(body.replace("guest", "other"))])
    exposure = _inspect(invitation(mixed), CalendarLimits(max_bytes=size + 10))
    assert exposure.calendar_truncated is True
    assert exposure.calendar_attendees_external == 10


def test_malformed_calendar_fails_closed_and_still_counts_the_attendee_lines() -> None:
    broken = ics(attendee_lines(3)).replace("END:VCALENDAR\r\n", "")  # never closed
    exposure = _inspect(invitation(part(broken)))
    assert exposure.calendar_truncated is True
    # Lines the parser did not read count as external whatever their domain:
    # the three guests and the (internal) organiser.
    assert exposure.calendar_attendees_external == 4
    assert exposure.calendar_attendees_internal == 0
    assert exposure.unparseable == 4


def test_a_line_the_parser_drops_is_still_counted() -> None:
    lines = [*attendee_lines(2), 'ATTENDEE;CN="Bad \\"quote\\"":mailto:dropped@example.net']
    exposure = _inspect(_plain_invitation(lines))
    assert exposure.calendar_truncated is True
    assert "dropped@example.net" in exposure.calendar_external_addresses
    assert exposure.calendar_attendees_external == 3


def test_garbage_calendar_never_raises() -> None:
    for junk in ["", "not a calendar at all", "BEGIN:VCALENDAR\r\n" * 500, "\x00\xff" * 100,
                 "BEGIN:VCALENDAR\r\nATTENDEE:mailto:x@example.com\r\n"]:  # fmt: skip
        found = parse_calendar(junk)
        assert found.parts == 1
    assert parse_calendar("ATTENDEE:mailto:x@example.com").unparseable == ("x@example.com",)


def test_bad_base64_is_flagged() -> None:
    message = invitation(
        b"Content-Type: text/calendar\r\nContent-Transfer-Encoding: base64\r\n\r\nA"
    )
    exposure = _inspect(message)
    assert exposure.calendar is True and exposure.calendar_truncated is True


def test_many_parts_stop_at_the_bound_and_flag_it() -> None:
    filler = [part(f"part {i}", "text/plain") for i in range(300)]
    mixed = multipart("mixed", "many", [*filler, part(ics(attendee_lines(5)))])
    exposure = _inspect(invitation(mixed), CalendarLimits(max_parts=100))
    assert exposure.calendar_truncated is True
    assert exposure.calendar is False  # not reached: only the flag tells
    reached = _inspect(invitation(mixed), CalendarLimits(max_parts=400))
    assert reached.calendar_attendees_external == 5 and not reached.calendar_truncated


def test_deep_nesting_stops_at_the_bound_and_flags_it() -> None:
    entity = part(ics(attendee_lines(2)))
    for level in range(12):
        entity = multipart("mixed", f"level{level}", [entity])
    exposure = _inspect(invitation(entity), CalendarLimits(max_depth=8))
    assert exposure.calendar_truncated is True
    assert (
        _inspect(invitation(entity), CalendarLimits(max_depth=16)).calendar_attendees_external == 2
    )


def test_a_boundary_that_starts_with_the_outer_one_is_not_a_delimiter() -> None:
    inner = multipart(
        "alternative", "outer-inner", [part("hi", "text/plain"), part(ics(attendee_lines(4)))]
    )
    outer = multipart("mixed", "outer", [inner])
    assert _inspect(invitation(outer)).calendar_attendees_external == 4


def test_unclosed_multipart_still_reaches_the_calendar() -> None:
    mixed = multipart("mixed", "open", [part("hi", "text/plain"), part(ics(attendee_lines(3)))])
    cut = mixed.rsplit(b"--open--", 1)[0]
    assert _inspect(invitation(cut)).calendar_attendees_external == 3


def test_lf_only_message_and_parts() -> None:
    mixed = multipart("mixed", "lf", [part("hi", "text/plain"), part(ics(attendee_lines(3)))])
    message = invitation(mixed).replace(b"\r\n", b"\n")
    assert _inspect(message).calendar_attendees_external == 3


def test_ordinary_mail_body_is_never_read() -> None:
    body = ics(attendee_lines(30)).encode()
    plain = b"From: a@example.org\r\nTo: b@example.com\r\nContent-Type: text/plain\r\n\r\n" + body
    exposure = _inspect(plain)
    assert (exposure.calendar, exposure.calendar_attendees_external) == (False, 0)
    assert exposure.visible_external == 1
    no_type = b"From: a@example.org\r\nTo: b@example.com\r\n\r\n" + body
    assert _inspect(no_type).calendar is False
    assert not wants_body({"content-type": "text/html; charset=utf-8"})
    assert wants_body({"content-type": "Multipart/Mixed; boundary=x"})
    assert wants_body({"content-type": 'application/octet-stream; name="a.ics"'})


def test_multipart_without_calendar_reports_nothing() -> None:
    mixed = multipart("mixed", "b", [part("hi", "text/plain"), part("<p>hi</p>", "text/html")])
    message = invitation(mixed)
    end = header_end(message)
    assert end is not None
    fields = {"content-type": 'multipart/mixed; boundary="b"'}
    assert find_calendar(message, end, fields, CalendarLimits()) is NO_CALENDAR
    exposure = _inspect(message)
    assert exposure.counts()["calendar"] == {
        "invitation": False,
        "attendees_internal": 0,
        "attendees_external": 0,
        "truncated": False,
        "methods": [],
    }


def test_counts_never_hold_an_address() -> None:
    exposure = _inspect(_plain_invitation(attendee_lines(3)))
    assert "@" not in repr(exposure.counts())
    assert exposure.counts()["calendar"]["attendees_external"] == 3


def test_header_block_over_the_cap_reads_no_body() -> None:
    message = _plain_invitation(attendee_lines(3))
    exposure = inspect_message(message, MATCHER, max_header_bytes=40)
    assert exposure.header_too_large is True
    assert exposure.calendar is False


def test_encoded_attachment_names_ending_in_ics_are_calendars() -> None:
    body = ics(attendee_lines(2))
    for extra in [
        'Content-Disposition: attachment; filename="=?utf-8?q?Einladung=2Eics?="\r\n',
        "Content-Disposition: attachment; filename*=utf-8''Einladung%20%C3%BC.ics\r\n",
        'Content-Disposition: attachment;\r\n filename*0="Ein"; filename*1="ladung.ics"\r\n',
    ]:
        mixed = multipart("mixed", "b", [part(body, "application/octet-stream", "base64", extra)])
        assert _inspect(invitation(mixed)).calendar_attendees_external == 2, extra


def test_delimiter_look_alikes_count_against_the_part_bound() -> None:
    lookalikes = b"".join(b"--b-not-a-delimiter\r\n" for _ in range(10_000))
    calendar = part(ics(attendee_lines(2)))
    body = b"--b\r\n" + part(lookalikes.decode(), "text/plain") + b"\r\n--b\r\n" + calendar
    message = invitation(b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + body)
    exposure = _inspect(message, CalendarLimits(max_parts=256))
    assert exposure.calendar_truncated is True


def test_a_body_full_of_dashes_is_walked_in_linear_time() -> None:
    dashes = "-" * 4_000_000
    mixed = multipart("mixed", "b", [part(dashes, "text/plain"), part(ics(attendee_lines(2)))])
    started = time.process_time()
    exposure = _inspect(invitation(mixed))
    assert time.process_time() - started < 1.0  # seconds of CPU: ~10 ms when linear
    assert exposure.calendar_attendees_external == 2


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(min_value=1, max_value=40),
    encoding=st.sampled_from(["7bit", "base64", "quoted-printable"]),
    depth=st.integers(min_value=0, max_value=4),
    line_ends=st.sampled_from([b"\r\n", b"\n"]),
)
def test_every_attendee_counts_whatever_the_encoding_and_nesting(
    count: int, encoding: str, depth: int, line_ends: bytes
) -> None:
    entity = part(ics(attendee_lines(count)), encoding=encoding)
    for level in range(depth):
        entity = multipart(["mixed", "alternative", "related"][level % 3], f"lvl-{level}", [entity])
    message = invitation(entity).replace(b"\r\n", line_ends)
    exposure = _inspect(message)
    assert exposure.calendar_attendees_external >= count
    assert exposure.visible_external >= count
    assert not exposure.calendar_truncated
