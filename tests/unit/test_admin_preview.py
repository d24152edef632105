"""Message preview (text only, never HTML) and the plain-words exposure explanation."""

from __future__ import annotations

from relay.admin.preview import explain_exposure, html_to_text, preview_message
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
