"""Issue 10, plain values: no separator, quoting or Unicode trick hides an
address, and everyday Outlook shapes do not inflate the counts.

Internal domain in every case: ``example.org``.  Each test feeds a whole
message to :func:`inspect_message`, as the relay does, and checks the counts a
rule sees (``ccguard check --json`` prints the same numbers).
"""

from __future__ import annotations

import unicodedata

import pytest

from relay.actions import rewrite_message
from relay.inspect import DomainMatcher, Exposure, inspect_message
from relay.inspect.scan import AT_SIGNS
from tests.helpers.actions import field_list, parsed

MATCHER = DomainMatcher(["example.org"])


def _inspect(to: str, cap: int = 1 << 22) -> Exposure:
    message = f"From: s@example.org\r\nTo: {to}\r\nSubject: s\r\n\r\nbody\r\n".encode()
    return inspect_message(message, MATCHER, max_header_bytes=cap)


def _counts(to: str) -> tuple[int, int, int, int]:
    got = _inspect(to)
    return got.visible_total, got.visible_internal, got.visible_external, got.unparseable


# --- 1. separators the old scan did not cut at

UNICODE_SEPARATORS = [
    "\uff0c",  # FULLWIDTH COMMA
    "\u3001",  # IDEOGRAPHIC COMMA
    "\uff1b",  # FULLWIDTH SEMICOLON
    "\u060c",  # ARABIC COMMA
    "\u061b",  # ARABIC SEMICOLON
    "\u2014",  # EM DASH
    "\u2022",  # BULLET
    "\u00b7",  # MIDDLE DOT
    "\u3000",  # IDEOGRAPHIC SPACE
    "\u00a0",  # NO-BREAK SPACE
    "\u200b",  # ZERO WIDTH SPACE
    "\u300a\u300b",  # double angle brackets
    "\uff08\uff09",  # fullwidth parentheses
]
ASCII_SEPARATORS = ["/", "|", "][", ")(", "}{", "><", " ", "\t", "", "#", "+", "!", "&"]


@pytest.mark.parametrize("sep", UNICODE_SEPARATORS + ASCII_SEPARATORS, ids=ascii)
def test_300_addresses_joined_by_any_separator_count_300(sep: str) -> None:
    to = sep.join(f"trainee{i}@d{i % 30}.example.com" for i in range(300))
    got = _inspect(to)
    assert got.visible_total == 300
    assert got.visible_external == 300


def test_every_unicode_punctuation_symbol_space_and_control_separates() -> None:
    """The class, not a list: every BMP character in a punctuation, symbol,
    separator or control category, used between three addresses."""
    categories = ("P", "S", "Z", "C")
    missed = []
    for code in range(0x10000):
        char = chr(code)
        if unicodedata.category(char)[0] not in categories or char in AT_SIGNS:
            continue
        if unicodedata.category(char) == "Cs":
            continue
        to = char.join(("a1@x1.example.com", "a2@x2.example.com", "a3@x3.example.com"))
        if _inspect(to).visible_total < 3:
            missed.append(f"U+{code:04X}")
    assert missed == []


def test_brackets_glue_no_addresses_together() -> None:
    to = "[a1@example.com][a2@example.com](a3@example.com){a4@example.com}<a5@example.com>"
    assert _counts(to)[0] == 5


def test_a_token_with_several_at_signs_yields_each() -> None:
    assert _counts("a1@example.com@example.net")[0] == 2
    assert _counts("a1@x1.example.coma2@x2.example.coma3@x3.example.com")[0] == 3


@pytest.mark.parametrize("invisible", ["\u200b", "\u200d", "\u00ad", "\u202e", "\ufeff"], ids=ascii)
def test_invisible_characters_neither_cut_nor_merge_addresses(invisible: str) -> None:
    """A reader sees the text around a zero-width or bidi character joined."""
    domains = [f"e{invisible}xample{i}.com" for i in range(20)]
    assert _counts(" ".join(f"info@{domain}" for domain in domains))[0] == 20
    assert _counts(f"a1@example.com{invisible}a2@example.com")[0] == 2


# --- 2. addresses the old scan never reached

SHAPES = {
    "quoted-local-semicolons": "; ".join(f'"Guest {i:03}"@example.com' for i in range(50)),
    "quoted-local-spaces": " ".join(f'"Guest {i:03}"@example.com' for i in range(50)),
    "cfws-around-at": " ".join(f"a{i} @ example.com" for i in range(50)),
    "cfws-around-dots": " ".join(f"a{i} . b @ example . com" for i in range(50)),
    "comment-before-at": " ".join(f"a{i}(Sales)@example.com" for i in range(50)),
    "comment-after-at": " ".join(f"a{i}@(Sales)example.com" for i in range(50)),
    "quoted-domain": " ".join(f'a{i}@"example.com"' for i in range(50)),
    "in-own-quoted-local": '"'
    + ", ".join(f"a{i}@example.com" for i in range(49))
    + '"@example.net',
    "in-domain-literal": "x@[" + " ".join(f"a{i}@example.com" for i in range(49)) + "]",
    "in-route": "<@" + ",@".join(f"a{i}@example.com" for i in range(49)) + ":x@example.com>",
    "in-route-literal": "<@["
    + " ".join(f"a{i}@example.com" for i in range(49))
    + "]:x@example.net>",
}


@pytest.mark.parametrize("shape", SHAPES)
def test_addresses_in_every_shape_count(shape: str) -> None:
    assert _counts(SHAPES[shape])[0] == 50


@pytest.mark.parametrize(
    "items",
    [
        [f'"Guest {i:03}"@example.com' for i in range(50)],
        [f"Guest {i} <g{i}@example.com>" for i in range(50)],
        [f"g{i}@example.com (Guest {i})" for i in range(50)],
        [f"g{i} @ example.com" for i in range(50)],
        [f"'g{i}@example.com' <g{i}@example.com>" for i in range(50)],
    ],
    ids=["quoted-local", "name-addr", "comment", "cfws", "outlook-quotes"],
)
def test_comma_and_semicolon_lists_count_the_same(items: list[str]) -> None:
    assert _counts(", ".join(items)) == _counts("; ".join(items)) == (50, 0, 50, 0)


def test_internal_semicolon_list_stays_internal() -> None:
    assert _counts("ann@example.org; bob@example.org; guest@example.com") == (3, 2, 1, 0)


# --- 3. look-alike at-signs: a reader sees an address, so it counts (external)


def test_look_alike_at_signs_are_the_nfkc_ones() -> None:
    expected = {chr(c) for c in range(0x110000) if unicodedata.normalize("NFKC", chr(c)) == "@"}
    assert set(AT_SIGNS) == expected


@pytest.mark.parametrize("at", ["\uff20", "\ufe6b"], ids=ascii)
def test_look_alike_at_counts_as_unparseable_external(at: str) -> None:
    to = ", ".join(f"a{i}{at}example.org" for i in range(30))
    assert _counts(to) == (30, 0, 30, 30)
    assert _counts(f"Bob <bob{at}example.org>") == (1, 0, 1, 1)


# --- 4. Outlook's single-quoted display names


def test_outlook_quoted_names_are_one_internal_mailbox_each() -> None:
    to = ", ".join(f"'{n}@example.org' <{n}@example.org>" for n in ("ann", "bob", "cy"))
    assert _counts(to) == (3, 3, 0, 0)


@pytest.mark.parametrize(
    "to",
    [
        "'ann@example.org' <ann@example.org>",
        "\"'ann@example.org'\" <ann@example.org>",
        f'"Ann@{"example".title()}.{"org".upper()}" <ann@example.org>',
        "ann@example.org <ann@example.org>",
        "'Ann Smith (ann@example.org)' <ann@example.org>",
        "=?utf-8?q?'ann=40example.org'?= <ann@example.org>",
    ],
)
def test_own_address_in_the_name_adds_nothing(to: str) -> None:
    assert _counts(to) == (1, 1, 0, 0)


def test_another_address_in_an_outlook_name_still_counts() -> None:
    assert _counts("'bob@example.com' <ann@example.org>") == (2, 1, 1, 1)


# --- 5. invalid but universal display names


@pytest.mark.parametrize(
    "to",
    [
        "[EXT] Bob <bob@example.org>",
        "Bob [EXT] <bob@example.org>",
        "[EXT]Bob Smith <bob@example.org>",
        "Bob] Smith <bob@example.org>",
        "Dr. Bob J. Smith Jr. <bob@example.org>",
        '"Bob" Smith <bob@example.org>',
        "Bob @ Home <bob@example.org>",
        "Bob (Sales) [EXT] <bob@example.org>",
    ],
)
def test_lenient_display_names_are_one_internal_mailbox(to: str) -> None:
    assert _counts(to) == (1, 1, 0, 0)


def test_rewrite_keeps_a_lenient_internal_mailbox_and_drops_the_rest() -> None:
    message = (
        b"From: s@example.org\r\n"
        b"To: [EXT] Bob <bob@example.org>; 'ann@example.org' <ann@example.org>;"
        b" guest\xef\xbc\x8cother@example.com\r\n\r\nbody\r\n"
    )
    result = rewrite_message(parsed(message), MATCHER)
    to = dict(field_list(result.message))["to"]
    assert to == b" [EXT] Bob <bob@example.org>, 'ann@example.org' <ann@example.org>\r\n"
    after = inspect_message(result.message, MATCHER, max_header_bytes=1 << 20)
    assert (after.visible_internal, after.visible_external) == (2, 0)


# --- the header cap, exactly (missing mutation test of issue 9)


def test_header_without_blank_line_one_byte_over_the_cap_is_flagged() -> None:
    head = b"From: s@example.org\r\nTo: a@example.com\r\nSubject: s\r\n"  # no blank line
    over = inspect_message(head, MATCHER, max_header_bytes=len(head) - 1)
    assert over.header_too_large
    exact = inspect_message(head, MATCHER, max_header_bytes=len(head))
    assert not exact.header_too_large
    assert exact.visible_external == 1


# --- found by the fuzzer (tests/fuzz/fuzz_inspect.py)


def test_nul_in_an_encoded_word_charset_is_no_traceback() -> None:
    assert _counts("=?u\x00?q?a=40example.com?= <me@example.org>") == (2, 1, 1, 1)
