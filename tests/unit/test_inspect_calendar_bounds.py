"""A MIME walk stopped at a bound is "unread", not "unreadable calendar" (pure).

The shipped ``hold-unreadable-calendar`` rule holds ``calendar_truncated``
mail, so ordinary mail with many attachments or a few nested forwards must not
get the flag; it is set only when the unread rest of the message hints at a
calendar.
"""

from __future__ import annotations

from relay.inspect import CalendarLimits, DomainMatcher, Exposure, inspect_message
from tests.helpers.calendar import attendee_lines, ics, invitation, multipart, part

MATCHER = DomainMatcher(["example.org"])
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def _inspect(message: bytes, limits: CalendarLimits | None = None) -> Exposure:
    return inspect_message(
        message, MATCHER, max_header_bytes=1 << 20, calendar_limits=limits or CalendarLimits()
    )


def _images(count: int) -> list[bytes]:
    return [
        part(PNG, f'image/png; name="photo{i}.png"', "7bit",
             f'Content-Disposition: attachment; filename="photo{i}.png"\r\n')
        for i in range(count)
    ]  # fmt: skip


def _forwards(inner: bytes, times: int) -> bytes:
    """``inner`` (a MIME entity) forwarded ``times`` times, each as message/rfc822."""
    for n in range(times):
        forwarded = (
            f"From: x{n}@example.org\r\nSubject: fw {n}\r\nMIME-Version: 1.0\r\n".encode() + inner
        )
        inner = multipart(
            "mixed",
            f"fw{n}",
            [
                part("see below", "text/plain"),
                b"Content-Type: message/rfc822\r\n\r\n" + forwarded,
            ],
        )
    return inner


def test_300_image_attachments_are_not_an_unreadable_calendar() -> None:
    exposure = _inspect(invitation(multipart("mixed", "BB", _images(300))))
    assert exposure.calendar is False and exposure.calendar_truncated is False


def test_an_invitation_after_300_images_is_flagged_unread() -> None:
    calendar = part(ics(attendee_lines(5)))
    exposure = _inspect(invitation(multipart("mixed", "BB", [*_images(300), calendar])))
    assert exposure.calendar_truncated is True
    assert exposure.calendar is False  # not reached: only the flag tells


def test_an_ics_file_name_after_the_bound_is_a_hint_even_base64_encoded() -> None:
    attachment = part(
        ics(attendee_lines(5)), "application/octet-stream", "base64",
        'Content-Disposition: attachment; filename="invite.ICS"\r\n',
    )  # fmt: skip
    exposure = _inspect(invitation(multipart("mixed", "BB", [*_images(300), attachment])))
    assert exposure.calendar_truncated is True


def test_an_encoded_file_name_after_the_bound_may_hide_ics_and_is_a_hint() -> None:
    attachment = part(
        ics(attendee_lines(5)), "application/octet-stream", "base64",
        'Content-Disposition: attachment; filename="=?utf-8?q?Einladung=2Eics?="\r\n',
    )  # fmt: skip
    exposure = _inspect(invitation(multipart("mixed", "BB", [*_images(300), attachment])))
    assert exposure.calendar_truncated is True


def test_five_nested_forwards_are_not_an_unreadable_calendar() -> None:
    entity = _forwards(part("the original text", "text/plain"), 5)  # depth 10 > 8
    exposure = _inspect(invitation(entity))
    assert exposure.calendar is False and exposure.calendar_truncated is False


def test_an_invitation_inside_five_nested_forwards_is_flagged_unread() -> None:
    entity = _forwards(part(ics(attendee_lines(3))), 5)
    assert _inspect(invitation(entity)).calendar_truncated is True
    reached = _inspect(invitation(entity), CalendarLimits(max_depth=16))
    assert reached.calendar_attendees_external == 3 and not reached.calendar_truncated


def test_an_unread_rest_over_the_search_bound_fails_closed() -> None:
    big = [part("x" * 4096, "text/plain") for _ in range(300)]
    message = invitation(multipart("mixed", "BB", big))
    assert _inspect(message).calendar_truncated is False  # searched: no hint
    assert _inspect(message, CalendarLimits(max_bytes=1024)).calendar_truncated is True
