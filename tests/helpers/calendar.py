"""Calendar invitations as mail clients send them (example.org/.com/.net only)."""

from __future__ import annotations

import base64
import quopri
import re

__all__ = ["attendee_lines", "ics", "invitation", "multipart"]

ORGANIZER = "ORGANIZER;CN=Alice Organiser:mailto:alice@example.org"


def attendee_lines(count: int, domain: str = "example.com") -> list[str]:
    return [
        f'ATTENDEE;CN="Guest {i:03d}";ROLE=REQ-PARTICIPANT;RSVP=TRUE:mailto:guest{i:03d}@{domain}'
        for i in range(count)
    ]


def ics(lines: list[str], method: str | None = "REQUEST", organizer: str | None = ORGANIZER) -> str:
    """A VCALENDAR with one VEVENT holding ``lines`` (CRLF line ends)."""
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//ccguard tests//EN"]
    if method is not None:
        head.append(f"METHOD:{method}")
    event = ["BEGIN:VEVENT", "UID:meeting-1@example.org", "DTSTAMP:20261201T090000Z",
             "DTSTART:20261202T100000Z", "SUMMARY:Induction"]  # fmt: skip
    if organizer is not None:
        event.append(organizer)
    tail = ["END:VEVENT", "END:VCALENDAR"]
    return "\r\n".join([*head, *event, *lines, *tail]) + "\r\n"


def _encode(body: str, encoding: str) -> bytes:
    raw = body.encode("utf-8")
    if encoding == "base64":
        return base64.encodebytes(raw).replace(b"\n", b"\r\n")
    if encoding == "quoted-printable":
        return re.sub(rb"(?<!\r)\n", b"\r\n", quopri.encodestring(raw))
    return raw


def part(body: str, ctype: str = "text/calendar; method=REQUEST; charset=UTF-8",
         encoding: str = "7bit", extra: str = "") -> bytes:  # fmt: skip
    """One MIME part: its header block and (encoded) body."""
    head = f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {encoding}\r\n{extra}\r\n"
    return head.encode() + _encode(body, encoding)


def multipart(subtype: str, boundary: str, parts: list[bytes]) -> bytes:
    """A multipart entity: its Content-Type field line and body."""
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + p + b"\r\n" for p in parts)
    body += b"--" + boundary.encode() + b"--\r\n"
    return f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode() + body


def invitation(
    entity: bytes, to: str = "Bob <bob@example.com>", subject: str = "Induction"
) -> bytes:
    """A whole message whose MIME entity (header fields + body) is ``entity``."""
    head = (
        f"From: Alice <alice@example.org>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.org>\r\nMIME-Version: 1.0\r\n"
    )
    return head.encode() + entity
