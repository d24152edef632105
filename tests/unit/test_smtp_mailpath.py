"""The fast path for MAIL FROM / RCPT TO addresses gives aiosmtpd's answer, or none.

``plain_address`` may decline any argument (aiosmtpd's parser then runs); when it
answers, the answer must be the one aiosmtpd's own ``_getaddr`` gives for the
same text.  Hypothesis searches arguments built from the characters that matter
to the RFC 5322 parser (specials, blanks, comments, quotes, encoded-word
markers, non-ASCII).
"""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import example, given, settings
from hypothesis import strategies as st

from relay.smtp.mailpath import plain_address

#: A domain in mixed case, spelt from the lower-case reserved name.
MIXED_CASE = "example".title() + "." + "org".upper()

_LIBRARY = SMTP(object(), hostname="test.example.org")
# White space the parser's str.lstrip() skips but SMTP's blanks are not.
_ODD_SPACE = "\r\n\x0b\x0c\x1c\x1f\x85\xa0\u2003\u3000"
_CHARS = "azAZ09.-_+=?!#$%&'*/^`{|}~" + '<>@()[]",;:\\ \t' + "é\x00" + _ODD_SPACE


def library(arg: str) -> tuple[str | None, str | None]:
    return _LIBRARY._getaddr(arg)


# Valid dot-atoms often, so that the fast path answers and its answer is checked.
atom = st.text(alphabet="azAZ09!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=4)
dot_atom = st.lists(atom, min_size=1, max_size=3).map(".".join)
part = st.one_of(dot_atom, st.text(alphabet=_CHARS, min_size=0, max_size=12))
blanks = st.text(alphabet=" \t" + _ODD_SPACE, max_size=3)
tail = st.one_of(
    st.just(""),
    st.text(alphabet=_CHARS, max_size=20),
    st.builds("{}{}{}".format, blanks, st.sampled_from(["", "(c)", "SIZE=1"]), blanks),
)


@st.composite
def arguments(draw: st.DrawFn) -> str:
    """Mostly ``<local@domain>rest``-shaped text with hostile characters mixed in."""
    local, domain, rest = draw(part), draw(part), draw(tail)
    shape = draw(st.sampled_from(["<{}@{}>{}", "{}@{}{}", "<{}@{}> {}", " <{}@{}>{}", "{}{}{}"]))
    return shape.format(local, domain, rest)


@settings(max_examples=3000, deadline=None)
@given(arguments())
@example("<alice@example.org> SIZE=100 BODY=8BITMIME")
@example("<=?utf-8?q?x?=@example.org>")
@example("<a@example.org> (comment) SIZE=1")
@example("<a@example.org>\tSIZE=1")
@example("<a@example.org>SIZE=1")
@example("<a@example.org>  ")
@example("<0@0> \r")
@example("<a@example.org> \x0b(c) SIZE=1")
@example("<a@example.org> \u2003SIZE=1")
@example("<a@example.org> \xa0(comment)")
def test_fast_path_agrees_with_aiosmtpd_whenever_it_answers(arg: str) -> None:
    fast = plain_address(arg)
    if fast is not None:
        assert fast == library(arg)


@pytest.mark.parametrize(
    ("arg", "address", "rest"),
    [
        ("<alice@example.org>", "alice@example.org", ""),
        (
            "<alice@example.org> SIZE=4096 BODY=8BITMIME",
            "alice@example.org",
            "SIZE=4096 BODY=8BITMIME",
        ),
        ("<first.last+tag@mail.example.com>", "first.last+tag@mail.example.com", ""),
        ("<o'brien@example.net> NOTIFY=NEVER", "o'brien@example.net", "NOTIFY=NEVER"),
        ("<a@example.org>\t\x0b SIZE=1", "a@example.org", "SIZE=1"),
        (f"<Alice.Smith@{MIXED_CASE}>", f"Alice.Smith@{MIXED_CASE}", ""),  # case kept
    ],
)
def test_the_common_forms_take_the_fast_path(arg: str, address: str, rest: str) -> None:
    assert plain_address(arg) == (address, rest) == library(arg)


@pytest.mark.parametrize(
    "arg",
    [
        "<>",  # the null sender
        '<"a b"@example.org>',  # quoted local part
        "<a@[192.0.2.1]>",  # domain literal
        "<@relay.example.net:a@example.org>",  # source route
        "<é@example.org>",  # SMTPUTF8
        "a@example.org",  # no angle brackets
        "<a@example.org> (comment)",
        "<a@example.org> \x0c(comment) SIZE=1",  # the parser skips the comment
        "<a..b@example.org>",
        "<a@example.org.>",
        "<=?utf-8?q?x?=@example.org>",
        "<a@=?utf-8?q?x?=>",  # the parser decodes it to a@x
        "x<a@example.org>",
    ],
)
def test_everything_else_goes_to_aiosmtpd(arg: str) -> None:
    assert plain_address(arg) is None
