"""The rewrite action: external addresses removed from the visible recipient headers.

Only To, Cc, Resent-To and Resent-Cc fields that actually lose an address are
rebuilt; every other field (and a visible field with nothing to remove) and
the body stay byte-for-byte as they arrived.  A rebuilt field keeps each
internal mailbox as it was written (display name, encoded words), joined with
``", "`` and folded at the commas.

* To left empty → ``To: undisclosed-recipients:;`` (one, where the first To was).
* Cc, Resent-To, Resent-Cc left empty → the field is dropped (the Resent-*
  block stays valid: its destination fields are optional, RFC 5322 3.6.6).
* Unparseable address-like text counts as external and is removed (fail closed).
* An internal mailbox whose display name or comment shows any address-like
  token other than its own address is reduced to its bare address.
* Lines of the header block that belong to no field (where a bare CR or LF
  was, a mangled field name) and show an address-like token are dropped: inspection
  counts them as unparseable.
* Groups in a rebuilt field are flattened (the group name is dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

from relay.actions.headers import CRLF, RawField, assemble_pieces, fold_list
from relay.actions.tag import DKIM_BROKEN, TAG_ACTION, TAG_DKIM, Tags, is_tag_field, tag_fields
from relay.inspect.addresses import Mailbox, address_like_tokens, parse_address_header
from relay.inspect.domains import DomainMatcher
from relay.inspect.headers import decode_header_value
from relay.inspect.parsed import ParsedMessage

__all__ = [
    "UNDISCLOSED",
    "VISIBLE_HEADERS",
    "RewriteResult",
    "dkim_covered",
    "junk_addresses",
    "rewrite_message",
    "rewritten_fields",
    "safe_source",
]

VISIBLE_HEADERS = frozenset({"to", "cc", "resent-to", "resent-cc"})
UNDISCLOSED = "undisclosed-recipients:;"
DEFAULT_TAGS: Tags = ((TAG_ACTION, "rewrite"),)


@dataclass(frozen=True, slots=True)
class RewriteResult:
    """The rewritten message as ``pieces`` (new header block, a view of the
    original body: sent without joining them), how many address occurrences were
    ``removed``, and whether a DKIM signature covered a changed header
    (``dkim_broken``)."""

    pieces: tuple[bytes, memoryview]
    removed: int
    dkim_broken: bool

    @property
    def message(self) -> bytes:
        """The rewritten message's bytes, joined (a copy of the body)."""
        return b"".join(self.pieces)


@dataclass(frozen=True, slots=True)
class _Filtered:
    items: list[str]
    removed: int
    changed: bool


def safe_source(mailbox: Mailbox) -> str:
    """The mailbox as written, unless its display name or comments show an
    address-like token other than its own address (e.g. ``"bob@example.net"
    <ann@example.org>``, which inspection counts as unparseable): then only
    its address."""
    return mailbox.address if mailbox.shows else mailbox.source


def junk_addresses(field: RawField) -> int:
    """How many address-like tokens a nameless field (lines that belong to no
    field) shows; 0 for a real field."""
    if field.name:
        return 0
    return len(address_like_tokens(decode_header_value(field.raw)))


def _filter(field: RawField, matcher: DomainMatcher) -> _Filtered:
    parsed = parse_address_header(field.value())
    items: list[str] = []
    removed = len(parsed.unparseable)
    changed = bool(parsed.unparseable_sources)
    for mailbox in parsed.mailboxes:
        if not matcher.is_internal_address(mailbox.address):
            removed += 1
            changed = True
            continue
        source = safe_source(mailbox)
        changed = changed or source != mailbox.source
        items.append(" ".join(source.splitlines()))
    return _Filtered(items, removed, changed)


def dkim_covered(fields: tuple[RawField, ...] | list[RawField]) -> set[str]:
    """Lower-case names listed in the ``h=`` tag of any DKIM-Signature field."""
    covered: set[str] = set()
    for field in fields:
        if field.key != "dkim-signature":
            continue
        for tag in field.value().split(";"):
            name, eq, value = tag.partition("=")
            if eq and name.strip().lower() == "h":
                covered.update(n.strip().lower() for n in value.split(":") if n.strip())
    return covered


def rewrite_fields(
    fields: tuple[RawField, ...], matcher: DomainMatcher, eol: bytes = CRLF
) -> tuple[list[RawField], int, set[str]]:
    """The visible fields filtered; returns the new fields (foreign tags
    dropped), the count removed and the lower-case names that changed."""
    out: list[RawField] = []
    removed, changed = 0, set[str]()
    first_to: tuple[int, str] | None = None
    to_left = False
    for field in fields:
        junk = junk_addresses(field)
        if is_tag_field(field) or junk:
            changed.add(field.key)
            removed += junk
            continue
        if field.key == "to" and first_to is None:
            first_to = (len(out), field.name)
        if field.key not in VISIBLE_HEADERS:
            out.append(field)
            continue
        result = _filter(field, matcher)
        if not result.changed:
            out.append(field)
        else:
            removed += result.removed
            changed.add(field.key)
            if result.items:
                out.append(RawField(field.name, fold_list(field.name, result.items, eol)))
        to_left = to_left or (field.key == "to" and (bool(result.items) or not result.changed))
    if first_to is not None and not to_left:
        index, name = first_to
        out.insert(index, RawField(name, f"{name}: {UNDISCLOSED}".encode("ascii") + eol))
    return out, removed, changed


def rewritten_fields(
    message: ParsedMessage, matcher: DomainMatcher, *, tags: Tags = DEFAULT_TAGS
) -> tuple[list[RawField], int, bool]:
    """The header fields :func:`rewrite_message` gives ``message`` (kept fields are
    the very objects of ``message.fields``), how many addresses were removed and
    whether DKIM is broken: for a front that edits fields instead of sending bytes."""
    fields, removed, changed = rewrite_fields(message.fields, matcher)
    all_tags = list(tags)
    changed.update(name.lower() for name, _ in all_tags)
    broken = bool(changed & dkim_covered(message.fields))
    if broken:
        all_tags.append((TAG_DKIM, DKIM_BROKEN))
    return [*tag_fields(all_tags), *fields], removed, broken


def rewrite_message(
    message: ParsedMessage, matcher: DomainMatcher, *, tags: Tags = DEFAULT_TAGS
) -> RewriteResult:
    """The rewrite action on ``message`` (see module doc); returns the new bytes.

    ``tags`` go at the top of the header block; ``X-CCGuard-DKIM:
    broken-by-rewrite`` is added when a DKIM-Signature's ``h=`` covers a
    changed field.
    """
    fields, removed, broken = rewritten_fields(message, matcher, tags=tags)
    return RewriteResult(assemble_pieces(message, fields), removed, broken)
