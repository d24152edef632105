"""Property: rewrite never leaves an external address visible and never touches anything else."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.actions import rewrite_message
from relay.inspect import normalise_line_endings
from tests.helpers.actions import MATCHER, exposure_of, field_list, parsed

VISIBLE = {"to", "cc", "resent-to", "resent-cc"}

local = st.from_regex(r"[a-z0-9][a-z0-9._+-]{0,8}", fullmatch=True)
domain = st.sampled_from(
    [
        "example.org",
        "sub.example.org",
        "EXAMPLE.ORG",
        "example.com",
        "example.net",
        "xn--bcher-kva.example.com",
    ]
)
phrase = st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,12}", fullmatch=True)
quoted = st.from_regex(r'"[^"\\\r\n]{0,12}"', fullmatch=True)
encoded = st.sampled_from(
    ["=?utf-8?q?J=C3=B6rg?=", "=?utf-8?b?w6Rh?=", "=?iso-8859-1?q?a=40example.com?="]
)


@st.composite
def mailbox(draw: st.DrawFn) -> str:
    addr = f"{draw(local)}@{draw(domain)}"
    form = draw(st.integers(0, 3))
    if form == 0:
        return addr
    name = draw(st.one_of(phrase, quoted, encoded))
    return f"{name} <{addr}>" if form < 3 else f"{addr} ({draw(phrase)})"


junk = st.text(alphabet='abc@<>,;:"().\\ ex.comorg', max_size=30)
item = st.one_of(mailbox(), mailbox(), junk, st.builds(lambda b: f"team: {b};", mailbox()))


@st.composite
def address_value(draw: st.DrawFn) -> str:
    items = draw(st.lists(item, min_size=0, max_size=8))
    # Some commas follow a bare CR or LF: the rest of the line is no field.
    text = "".join(
        (draw(st.sampled_from([", ", ", ", "\r, ", "\n, "])) if i else "") + part
        for i, part in enumerate(items)
    )
    # Fold at some of the spaces.
    return "".join(
        "\r\n " if ch == " " and draw(st.booleans()) and i > 0 else ch for i, ch in enumerate(text)
    )


other_name = st.sampled_from(
    ["From", "Subject", "Message-ID", "Bcc", "X-Mailer", "Reply-To", "Date"]
)
visible_name = st.sampled_from(["To", "Cc", "Resent-To", "Resent-Cc", "TO", "cc"])
other_value = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x24F), max_size=40)
# Lines that are no field: a mangled name, or text after a bare CR/LF.
junk_line = st.builds(
    lambda head, value: head + value,
    st.sampled_from(["To\x00: ", "Cc : ", ", ", "junk ", " "]),
    address_value(),
)


@st.composite
def message(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.integers(0, 4))
        if kind < 2:
            lines.append(f"{draw(visible_name)}: {draw(address_value())}")
        elif kind < 4:
            lines.append(f"{draw(other_name)}: {draw(other_value)}")
        else:
            lines.append(draw(junk_line))
    eol = draw(st.sampled_from(["\r\n", "\n"]))
    head = "".join(line.replace("\r\n", eol) + eol for line in lines)
    body = draw(st.binary(max_size=50))
    return (head + eol).encode("utf-8") + body


@settings(max_examples=400, deadline=None)
@given(message())
def test_rewrite_hides_every_external_and_changes_nothing_else(msg: bytes) -> None:
    out = rewrite_message(parsed(msg), MATCHER).message
    after = exposure_of(out)
    assert after.visible_external == 0, out
    assert after.unparseable == 0, out
    assert set(after.internal_addresses) <= set(exposure_of(msg).internal_addresses)
    # Line endings are normalised on receipt: compare without them.
    untouched_before = [(n, v.rstrip(b"\r\n")) for n, v in field_list(msg) if n not in VISIBLE]
    untouched_after = [(n, v.rstrip(b"\r\n")) for n, v in field_list(out) if n not in VISIBLE]
    assert untouched_after[0][0] == "x-ccguard-action"
    assert untouched_after[1:] == untouched_before
    assert parsed(out).body == parsed(msg).body
    assert normalise_line_endings(out) is out
