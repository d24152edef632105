"""Header edits: replayed the way Postfix numbers them, they give exactly the wanted fields."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.actions.rewrite import rewritten_fields
from relay.inspect.domains import DomainMatcher
from relay.inspect.parsed import HeaderField, parse_message
from relay.milter.edits import ChangeEdit, InsertEdit, apply_edits, header_edits
from relay.milter.message import MessageBuilder, field_from_milter, milter_value

NAMES = ["To", "cc", "CC", "Subject", "X-CCGuard-Action", "Resent-To"]


def field(name: str, n: int) -> HeaderField:
    return field_from_milter(name, f" value {n}".encode())


@st.composite
def originals_and_target(draw: st.DrawFn) -> tuple[list[HeaderField], list[HeaderField]]:
    """Originals, and a target as the actions make one: new fields on top, then each
    original kept, replaced by a field of its name, or dropped, in order."""
    names = draw(st.lists(st.sampled_from(NAMES), max_size=12))
    originals = [field(name, i) for i, name in enumerate(names)]
    target = [
        field(n, 100 + i) for i, n in enumerate(draw(st.lists(st.sampled_from(NAMES), max_size=4)))
    ]
    for i, original in enumerate(originals):
        fate = draw(st.sampled_from(["keep", "replace", "drop", "insert-before"]))
        if fate == "insert-before":
            target.append(field(draw(st.sampled_from(NAMES)), 200 + i))
            fate = "keep"
        if fate == "keep":
            target.append(original)
        elif fate == "replace":
            target.append(field(original.name, 300 + i))
    return originals, target


@given(originals_and_target())
def test_edits_replayed_give_the_target(case: tuple[list[HeaderField], list[HeaderField]]) -> None:
    originals, target = case
    edits = header_edits(originals, target)
    assert [f.raw for f in apply_edits(originals, edits)] == [f.raw for f in target]


def test_every_occurrence_changed_last_first_then_inserts_on_top() -> None:
    originals = [field("To", 0), field("Cc", 1), field("cc", 2), field("X-CCGuard-Action", 3)]
    target = [field("X-CCGuard-Action", 9), field("To", 10), field("Cc", 11)]
    edits = header_edits(originals, target)
    assert edits == [
        ChangeEdit("cc", 2, b""),
        ChangeEdit("Cc", 1, b" value 11"),
        ChangeEdit("To", 1, b" value 10"),
        ChangeEdit("X-CCGuard-Action", 1, b""),
        InsertEdit(0, "X-CCGuard-Action", b" value 9"),
    ]


def test_a_field_is_the_bytes_the_smtp_front_would_cut() -> None:
    data = b"To:Bob <bob@example.com>,\r\n\tcarol@example.net\r\nSubject:  hi\r\n\r\nbody\r\n"
    builder = MessageBuilder()
    builder.header("To", b"Bob <bob@example.com>,\n\tcarol@example.net")
    builder.header("Subject", b"  hi")
    builder.body(b"body\r\n")
    built, parsed = builder.build(), parse_message(data)
    assert built == parsed
    assert milter_value(built.fields[0]) == b"Bob <bob@example.com>,\n\tcarol@example.net"


def test_rewrite_edits_replace_each_visible_field() -> None:
    builder = MessageBuilder()
    for name, value in [
        ("To", b" a@example.org, x@example.com"),
        ("Cc", b" y@example.com"),
        ("cc", b" b@example.org"),
    ]:
        builder.header(name, value)
    message = builder.build()
    fields, removed, _ = rewritten_fields(message, DomainMatcher(["example.org"]), tags=())
    edits = header_edits(message.fields, fields)
    assert removed == 2
    assert edits == [ChangeEdit("Cc", 1, b""), ChangeEdit("To", 1, b" a@example.org")]
