"""Header edits that turn the MTA's copy of a message into what the SMTP path delivers (pure).

The actions (:mod:`relay.actions`) say what the header block must become as a
list of fields: every field either one of the originals (the very object) or
a new one.  A milter cannot send a header block, only edits, so this module
aligns the two lists and expresses the difference as milter edits:

* an original not kept → ``chgheader(name, index, "")`` (deleted), or, when a new
  field of the same name stands in its place, ``chgheader(name, index, value)``;
* a new field with no original to replace → ``insheader(position, name, value)``.

Indexes: Postfix counts a name's occurrences case-insensitively and in the
header block as it is *now*, so a deletion renumbers the occurrences after it.
The changes are therefore sent last occurrence first (nothing before an edit
has moved), and the insertions after them, top first, at their final positions;
``insheader`` counts Postfix's own Received header (hidden from milters, on top of
the client's fields) too, so a field inserted below the top run goes one further.
New fields replace a dropped field of their name where one is near (the
undisclosed-recipients To takes the first To's place by ``chgheader``).
:func:`apply_edits` replays edits with those rules; the front checks with it
that the edits give exactly the wanted fields before it sends any.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from relay.inspect.parsed import HeaderField
from relay.milter.message import field_from_milter, milter_value

__all__ = ["ChangeEdit", "Edit", "InsertEdit", "apply_edits", "header_edits"]


@dataclass(frozen=True, slots=True)
class ChangeEdit:
    """Change the ``index``-th (from 1) field called ``name``; ``value`` b"" deletes it."""

    name: str
    index: int
    value: bytes


@dataclass(frozen=True, slots=True)
class InsertEdit:
    """Insert ``name: value`` so that ``position`` fields stand before it."""

    position: int
    name: str
    value: bytes


Edit = ChangeEdit | InsertEdit


def header_edits(original: Sequence[HeaderField], target: Sequence[HeaderField]) -> list[Edit]:
    """The edits turning ``original`` into ``target`` (see the module doc)."""
    originals = {id(f) for f in original}
    kept = {id(f) for f in target}
    changes: list[ChangeEdit] = []
    inserts: list[InsertEdit] = []
    occurrences: dict[str, int] = {}
    at = 0
    for i, field in enumerate(original):
        occurrences[field.key] = index = occurrences.get(field.key, 0) + 1
        dropped = id(field) not in kept
        # A new field goes in before this one unless a dropped original of its name can
        # stand in for it: this one while on top (tags stay on top), else this one or
        # one further on before the next kept field.
        while (
            at < len(target)
            and id(target[at]) not in originals
            and not (
                dropped and target[at].key == field.key
                if at == len(inserts)
                else _replaceable(target[at], original, i, kept)
            )
        ):
            inserts.append(_insert(at, target[at], top=at == len(inserts)))
            at += 1
        if not dropped:
            at += 1  # target[at] is this very field: the actions keep the order
        elif at < len(target) and id(target[at]) not in originals and target[at].key == field.key:
            changes.append(ChangeEdit(target[at].name, index, milter_value(target[at])))
            at += 1
        else:
            changes.append(ChangeEdit(field.name, index, b""))
    on_top = len(inserts) if len(inserts) == at else -1  # target[:at] all new: top run
    inserts.extend(
        _insert(pos, f, top=on_top >= 0 and pos == on_top + n)
        for n, (pos, f) in enumerate(enumerate(target[at:], start=at))
    )
    changes.sort(key=lambda c: (c.name.lower(), -c.index))
    return [*changes, *inserts]


def _replaceable(
    new: HeaderField, original: Sequence[HeaderField], start: int, kept: set[int]
) -> bool:
    """True when a dropped field called like ``new`` comes at ``start`` or after it,
    before the next field that is kept."""
    for field in original[start:]:
        if id(field) in kept:
            return False
        if field.key == new.key:
            return True
    return False


def _insert(position: int, field: HeaderField, *, top: bool) -> InsertEdit:
    # Postfix counts its own Received header (which it does not show to milters) at
    # the top of the block: below the run of fields inserted on top, one more.
    return InsertEdit(position if top else position + 1, field.name, milter_value(field))


def apply_edits(original: Sequence[HeaderField], edits: Sequence[Edit]) -> list[HeaderField]:
    """``original`` after ``edits``, numbered as Postfix numbers them (see the module doc),
    its hidden Received header included.  Time in proportion to fields plus edits: a
    deleted field leaves a hole (nothing after it moves) until an insertion counts places."""
    fields: list[HeaderField | None] = [_HIDDEN, *original]
    spots: dict[str, list[int]] | None = None  # name → where its occurrences are, in order
    for edit in edits:
        new = field_from_milter(edit.name, edit.value)
        if isinstance(edit, InsertEdit):
            fields = [f for f in fields if f is not None]
            fields.insert(min(edit.position, len(fields)), new)
            spots = None
            continue
        if spots is None:
            spots = _occurrences(fields)
        where = spots.setdefault(edit.name.lower(), [])
        if edit.index > len(where):
            where.append(len(fields))
            fields.append(new)  # what Postfix does with an index past the last one
        elif edit.value:
            fields[where[edit.index - 1]] = new
        else:
            fields[where.pop(edit.index - 1)] = None
    return [f for f in fields if f is not None and f is not _HIDDEN]


def _occurrences(fields: Sequence[HeaderField | None]) -> dict[str, list[int]]:
    spots: dict[str, list[int]] = {}
    for i, f in enumerate(fields):
        if f is not None and f is not _HIDDEN:
            spots.setdefault(f.key, []).append(i)
    return spots


#: Stands for the MTA's own Received header: counted by insheader, never shown or edited.
_HIDDEN = HeaderField("", b"")
