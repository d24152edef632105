"""A verdict carried out through the shared Dispatcher, turned into a milter answer.

The SMTP path hands :class:`relay.actions.Dispatcher` the live upstream
transaction.  The milter has none: the MTA itself delivers what passes.  So the
Dispatcher gets a :class:`CapturedDelivery` instead, which records the bytes
the SMTP path would have sent upstream and answers ``250``.  Everything else
is the Dispatcher's own doing, exactly as on the SMTP path: the quarantine
store, the split copies sent through ``[upstream]`` with the ledger, the
notices, the reject text.

What the MTA is then told (:class:`MilterAnswer`):

* pass / tag / rewrite → header edits (:mod:`relay.milter.edits`) and continue.
  The edits are checked to give byte for byte what the Dispatcher captured;
  if they would not (a bug), the message is tempfailed, never sent altered.
* quarantine / split that succeeded → discard: ccguard holds or delivered it.
* any 4xx / 5xx (reject, store failure, split failure) → that reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from relay import codes
from relay.actions.headers import assemble_pieces
from relay.actions.rewrite import rewritten_fields
from relay.actions.tag import strip_foreign_tags, tag_fields, verdict_tags
from relay.codes import Reply
from relay.inspect.domains import DomainMatcher
from relay.inspect.parsed import HeaderField, ParsedMessage
from relay.milter.edits import Edit, apply_edits, header_edits
from relay.policy.verdict import Verdict
from relay.settings import Action

__all__ = ["MAX_HEADER_EDITS", "CapturedDelivery", "MilterAnswer", "answer_for", "target_fields"]

#: The most header edits one answer carries.  Each is work for the MTA in proportion to
#: the header block (Postfix's cleanup rescans it per edit, and past ~10,000 deletions
#: it fails and panics, throttling all mail); a real message needs a few dozen.
MAX_HEADER_EDITS = 1000


class CapturedDelivery:
    """A stand-in for the upstream transaction: keeps what would be sent."""

    def __init__(self) -> None:
        self.pieces: tuple[bytes | memoryview, ...] | None = None
        self.aborted = False

    async def data(self, *pieces: bytes | memoryview) -> Reply:
        self.pieces = pieces
        return codes.OK

    async def abort(self) -> None:
        self.aborted = True


@dataclass(frozen=True, slots=True)
class MilterAnswer:
    """``edits`` then continue; or ``discard``; or ``reply`` (4xx/5xx)."""

    kind: str  # continue | discard | reject | tempfail (the metric's label)
    edits: Sequence[Edit] = field(default_factory=tuple)
    reply: Reply | None = None


def target_fields(
    message: ParsedMessage, verdict: Verdict, matcher: DomainMatcher
) -> list[HeaderField]:
    """The header fields the SMTP path delivers for a pass, tag or rewrite verdict."""
    if verdict.action is Action.REWRITE:
        return rewritten_fields(message, matcher, tags=verdict_tags(verdict))[0]
    kept = strip_foreign_tags(message.fields)
    if verdict.action is Action.TAG:
        return [*tag_fields(verdict_tags(verdict)), *kept]
    return kept


def answer_for(
    message: ParsedMessage,
    verdict: Verdict,
    reply: Reply,
    captured: CapturedDelivery,
    matcher: DomainMatcher,
) -> MilterAnswer:
    """What to tell the MTA after the Dispatcher answered ``reply``."""
    if not reply.is_success:
        return MilterAnswer("tempfail" if reply.is_transient else "reject", reply=reply)
    if captured.pieces is None:
        return MilterAnswer("discard")
    target = target_fields(message, verdict, matcher)
    if _edits_at_least(message.fields, target) > MAX_HEADER_EDITS:
        return MilterAnswer("reject", reply=codes.TOO_MANY_HEADER_EDITS)
    edits = header_edits(message.fields, target)
    head, _ = assemble_pieces(message, apply_edits(message.fields, edits))
    if not _same_message(captured.pieces, head, message.body_view()):
        return MilterAnswer("tempfail", reply=codes.INTERNAL_ERROR)
    return MilterAnswer("continue", edits=tuple(edits))


def _edits_at_least(original: Sequence[HeaderField], target: Sequence[HeaderField]) -> int:
    """A lower bound of the edits, counted before they are worked out (cheaply): every
    original not kept is changed or deleted, every new field changes or is inserted."""
    originals = {id(f) for f in original}
    kept = sum(1 for f in target if id(f) in originals)
    return max(len(original) - kept, len(target) - kept)


def _same_message(pieces: Sequence[bytes | memoryview], head: bytes, body: memoryview) -> bool:
    """True when ``pieces`` joined are ``head + body``, compared piece by piece
    (the body, possibly large, is never copied)."""
    left = [memoryview(p).cast("B") for p in pieces if len(p)]
    right = [m for m in (memoryview(head), body.cast("B")) if len(m)]
    if sum(map(len, left)) != sum(map(len, right)):
        return False
    while left and right:
        size = min(len(left[0]), len(right[0]))
        if left[0][:size] != right[0][:size]:
            return False
        left[0], right[0] = left[0][size:], right[0][size:]
        left = [m for m in left if len(m)]
        right = [m for m in right if len(m)]
    return True
