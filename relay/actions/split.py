"""The split action's plan: one copy per external recipient, one for the internal ones.

* An external envelope recipient's copy has one To field showing only their
  own address (as written in To/Cc if it was there with a display name, else
  bare).  Every other To, Cc, Resent-To, Resent-Cc and Bcc field is removed:
  an external copy shows no other person, internal colleagues included.
* All internal envelope recipients share one copy: the rewrite action applied
  (internal visible addresses stay, external ones go).
* Message-ID and every other field and the body are kept as they arrived.

Exactly once per recipient: :func:`split_key` names the message (sender and
the client's bytes only, so any retry, with any subset of the recipients, has
the same key) and :func:`delivered_id` / :func:`refused_id` name a recipient's
ledger entry, so the ledger can tell who already got (or was refused) a copy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from relay.actions.headers import CRLF, RawField, assemble_pieces, fold_list
from relay.actions.rewrite import VISIBLE_HEADERS, dkim_covered, junk_addresses, rewrite_message
from relay.actions.tag import DKIM_BROKEN, TAG_ACTION, TAG_DKIM, Tags, is_tag_field, tag_fields
from relay.envelope import Envelope
from relay.inspect.addresses import normalise_address, parse_address_header
from relay.inspect.domains import DomainMatcher
from relay.inspect.parsed import ParsedMessage

__all__ = [
    "SplitCopy",
    "delivered_id",
    "is_delivered_id",
    "plan_split",
    "recipient_identity",
    "refused_id",
    "split_key",
]

DEFAULT_TAGS: Tags = ((TAG_ACTION, "split"),)
_DROPPED = VISIBLE_HEADERS | {"bcc"}


@dataclass(frozen=True, slots=True)
class SplitCopy:
    """One upstream transaction: ``rcpts`` get ``message`` (one external
    recipient, or every internal one).  It is kept as ``pieces`` (its own
    header block, then a view of the client's body): a plan of a hundred
    copies of a large message does not hold a hundred bodies."""

    rcpts: tuple[str, ...]
    pieces: tuple[bytes, memoryview] | tuple[bytes]
    internal: bool = False

    @property
    def message(self) -> bytes:
        """The copy's bytes, joined (a copy of the body)."""
        return b"".join(self.pieces)


def split_key(envelope: Envelope, message: bytes) -> str:
    """SHA-256 over the envelope sender and the client's message bytes
    (line endings normalised, as every retry's are).

    The same for every retry of the message, whichever recipients the client
    sends it to this time, and independent of ccguard's queue id, trace header
    and clock.
    """
    digest = hashlib.sha256()
    digest.update(envelope.mail_from.encode("utf-8", "surrogateescape") + b"\0")
    digest.update(message)
    return digest.hexdigest()


def recipient_identity(rcpt: str) -> str:
    """The form two envelope recipients are the same person in: normalised
    (IDNA domain) and case-folded."""
    return normalise_address(rcpt).lower()


def _rcpt_hash(rcpt: str) -> str:
    raw = recipient_identity(rcpt).encode("utf-8", "surrogateescape")
    return hashlib.sha256(raw).hexdigest()[:32]


def delivered_id(rcpt: str) -> str:
    """Ledger entry: the upstream accepted a copy for ``rcpt`` (hashed, no address)."""
    return "d-" + _rcpt_hash(rcpt)


def is_delivered_id(entry: str) -> bool:
    """True for a ledger entry made by :func:`delivered_id`."""
    return entry.startswith("d-")


def refused_id(rcpt: str) -> str:
    """Ledger entry: the upstream refused ``rcpt``'s copy for good and the
    sender was told (hashed, no address)."""
    return "f-" + _rcpt_hash(rcpt)


def _own_sources(fields: tuple[RawField, ...]) -> dict[str, str]:
    """normalised address → how it was written in the visible headers (first
    seen), only where that text shows no other address."""
    sources: dict[str, str] = {}
    for field in fields:
        if field.key not in VISIBLE_HEADERS:
            continue
        for mailbox in parse_address_header(field.value()).mailboxes:
            if not mailbox.shows:
                sources.setdefault(mailbox.address, " ".join(mailbox.source.splitlines()))
    return sources


def _external_copy(
    fields: tuple[RawField, ...], shown: str, tags: Tags, eol: bytes = CRLF
) -> list[RawField]:
    out: list[RawField] = []
    to_at: int | None = None
    name: str | None = None
    changed = {"to", *(tag.lower() for tag, _ in tags)}
    for field in fields:
        gone = is_tag_field(field) or junk_addresses(field) > 0
        if gone or field.key in _DROPPED:
            changed.add(field.key)
        if field.key in _DROPPED:
            to_at = len(out) if to_at is None else to_at
            name = field.name if name is None and field.key == "to" else name
        elif not gone:
            out.append(field)
    name = name or "To"
    out.insert(to_at or 0, RawField(name, fold_list(name, [shown], eol)))
    broken = bool(changed & dkim_covered(fields))
    all_tags = [*tags, (TAG_DKIM, DKIM_BROKEN)] if broken else list(tags)
    return [*tag_fields(all_tags), *out]


def plan_split(
    message: ParsedMessage, envelope: Envelope, matcher: DomainMatcher, *, tags: Tags = DEFAULT_TAGS
) -> list[SplitCopy]:
    """The copies to deliver: external recipients in envelope order, then one
    copy for every internal recipient (if any).  Recipients repeated in the
    envelope (any case, see :func:`recipient_identity`) get one copy."""
    sources = _own_sources(message.fields)
    copies: list[SplitCopy] = []
    internal: list[str] = []
    seen: set[str] = set()
    for rcpt in envelope.rcpt_tos:
        if recipient_identity(rcpt) in seen:
            continue
        seen.add(recipient_identity(rcpt))
        if matcher.is_internal_address(rcpt):
            internal.append(rcpt)
            continue
        shown = sources.get(normalise_address(rcpt), rcpt)
        fields = _external_copy(message.fields, shown, tags)
        copies.append(SplitCopy((rcpt,), assemble_pieces(message, fields)))
    if internal:
        rewritten = rewrite_message(message, matcher, tags=tags).message
        copies.append(SplitCopy(tuple(internal), (rewritten,), internal=True))
    return copies
