"""Message preview (text only, never HTML) and the plain-words exposure explanation."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.admin.preview import (
    HEADERS_CUT_NOTE,
    MAX_HEADER_CHARS,
    explain_exposure,
    html_to_text,
    preview_message,
)
from relay.cli.quarantine import parse_age

HTML_ONLY = (
    b"From: a@example.org\r\nTo: b@example.com\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><head><script>evil()</script></head><body><p>Hello &amp; welcome</p>"
    b"<img src='http://example.com/t.png'><p>Line two</p></body></html>\r\n"
)


def test_html_only_message_is_reduced_to_its_text() -> None:
    preview = preview_message(HTML_ONLY)
    assert preview.from_html
    assert preview.text == "Hello & welcome\nLine two"
    assert ("Subject", "Grüße") in preview.headers


def test_html_to_text_drops_scripts_and_styles() -> None:
    assert html_to_text("<style>x{}</style><b>bold</b> <script>1</script>text") == "bold text"


def test_explanation_counts_and_rule() -> None:
    lines = explain_exposure(
        {"visible_total": 5, "visible_internal": 1, "visible_external": 4,
         "external_domains": 1, "per_header": {"cc": 4, "to": 1}, "unparseable": 0},
        "bulk", "4 external addresses visible",
    )  # fmt: skip
    text = " ".join(lines)
    assert "5 addresses" in text and "4 external addresses from 1 domain," in text
    assert "Cc: 4, To: 1" in text
    assert "rule “bulk”: 4 external addresses visible." in text


def test_explanation_of_a_calendar_invitation() -> None:
    calendar = {"invitation": True, "attendees_internal": 1, "attendees_external": 20,
                "truncated": False, "methods": ["REQUEST"]}  # fmt: skip
    exposure = {"visible_total": 22, "visible_external": 21, "calendar": calendar}
    text = " ".join(explain_exposure(exposure, "hide", "reason"))
    assert "calendar invitation: its attendee list shows 20 external attendees and 1" in text
    assert "does not hide them" in text
    plain = " ".join(explain_exposure({"visible_total": 2, "calendar": {}}, None, ""))
    assert "calendar" not in plain


def test_parse_age_units() -> None:
    assert parse_age("30d") == 30 * 86400
    assert parse_age("12h") == 12 * 3600
    assert parse_age("90m") == 90 * 60
    for bad in ["30", "d", "3w", "-1d"]:
        try:
            parse_age(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} accepted")


HOSTILE_HEADERS = [
    b'To: "',
    b"Reply-To: undisclosed-recipients:;;;;:",
    b"To: a@[",
    b"To: " + b"(" * 50_000,
    b"Subject: =?x-no-such-charset?q?abc?=",
    b"Content-Type: multipart/mixed; boundary=",
]


def _with_header(header: bytes) -> bytes:
    return b"From: a@example.org\r\n" + header + b"\r\nSubject: hi\r\n\r\nBody text\r\n"


@pytest.mark.parametrize("header", HOSTILE_HEADERS, ids=lambda h: h[:30].decode())
def test_malformed_headers_are_shown_as_written(header: bytes) -> None:
    preview = preview_message(_with_header(header))
    name, _, value = header.decode().partition(":")
    shown = next(text for field, text in preview.headers if field == name)
    assert shown == value.strip()[:MAX_HEADER_CHARS] + ("…" * (len(value) > 2001))
    assert preview.headers[0] == ("From", "a@example.org")
    assert "Body text" in preview.text


def test_huge_header_block_is_cut_with_a_note_and_the_body_still_shows() -> None:
    cc = b"Cc: " + b", ".join(b"user%d@example.com" % i for i in range(20_000))
    preview = preview_message(b"From: a@example.org\r\n" + cc + b"\r\n\r\nthe body\r\n")
    assert preview.notes == (HEADERS_CUT_NOTE,)
    assert [name for name, _ in preview.headers] == ["From", "Cc"]
    assert preview.text == "the body\n"


SEEDS = [
    _with_header(b"To: x@example.com, y@example.net"),
    HTML_ONLY,
    b"From: a@example.org\r\nTo: b@example.com\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"SGVsbG8=\r\n--b1\r\nContent-Type: application/pdf; name*=utf-8''a%20b.pdf\r\n"
    b'Content-Disposition: attachment; filename="a.pdf"\r\n\r\nJVBERi0=\r\n--b1--\r\n',
]
NASTY = b"\"()<>[]:;@\\,.=?*'%\r\n\t =?utf-8?b?=?q?\x00\xff\xc3"


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        chunk = draw(
            st.binary(max_size=6) | st.lists(st.sampled_from(NASTY), max_size=12).map(bytes)
        )
        cut = draw(st.integers(0, 4))
        data[at : at + cut] = chunk * draw(st.sampled_from([1, 1, 1, 50]))
    return bytes(data)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_no_mutation_of_a_message_makes_the_preview_raise(raw: bytes) -> None:
    preview = preview_message(raw)
    json.dumps([preview.headers, preview.text, [p.filename for p in preview.parts]])
    assert all(name for name, _ in preview.headers)


def test_a_row_with_bare_line_endings_is_previewed_as_it_would_be_released() -> None:
    # Rows stored by older versions may hold bare CR/LF: normalised like on receipt.
    raw = b"Subject: x\rX-Note: y\nTo: a@example.org\n\r\nTo: b@example.com\rline two\n"
    preview = preview_message(raw)
    assert preview.headers == [("Subject", "x"), ("X-Note", "y"), ("To", "a@example.org")]
    assert preview.text == "To: b@example.com\nline two\n"
