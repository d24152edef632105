"""Header edits: replayed the way Postfix numbers them, they give exactly the wanted fields."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from relay.actions.rewrite import rewritten_fields
from relay.inspect.domains import DomainMatcher
from relay.inspect.parsed import HeaderField, parse_message
from relay.milter.edits import ChangeEdit, Edit, InsertEdit, apply_edits, header_edits
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


def _replay_one_by_one(original: list[HeaderField], edits: list[Edit]) -> list[HeaderField]:
    """The plain replay (each edit renumbers from scratch), to check the fast one with."""
    hidden = HeaderField("", b"")
    fields = [hidden, *original]
    for edit in edits:
        new = field_from_milter(edit.name, edit.value)
        if isinstance(edit, InsertEdit):
            fields.insert(min(edit.position, len(fields)), new)
            continue
        spots = [i for i, f in enumerate(fields) if f is not hidden and f.key == edit.name.lower()]
        if edit.index > len(spots):
            fields.append(new)
        elif edit.value:
            fields[spots[edit.index - 1]] = new
        else:
            del fields[spots[edit.index - 1]]
    return [f for f in fields if f is not hidden]


@st.composite
def any_edits(draw: st.DrawFn) -> tuple[list[HeaderField], list[Edit]]:
    names = draw(st.lists(st.sampled_from(NAMES), max_size=10))
    change = st.builds(
        ChangeEdit, st.sampled_from(NAMES), st.integers(1, 5), st.sampled_from([b"", b" new"])
    )
    insert = st.builds(InsertEdit, st.integers(0, 12), st.sampled_from(NAMES), st.just(b" ins"))
    edits = draw(st.lists(st.one_of(change, insert), max_size=10))
    return [field(n, i) for i, n in enumerate(names)], edits


@given(any_edits())
def test_the_fast_replay_equals_the_plain_one(case: tuple[list[HeaderField], list[Edit]]) -> None:
    original, edits = case
    assert [f.raw for f in apply_edits(original, edits)] == [
        f.raw for f in _replay_one_by_one(original, edits)
    ]
