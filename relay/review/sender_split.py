"""Releasing a held message as one copy per recipient, on the sender's word.

The message is claimed like any release (so no reviewer and no other
instance can release or delete it meanwhile), then handed to the split
action's own delivery (its ledger and lease make each copy go exactly once,
retries included), and marked released with mode ``split``.
"""

from __future__ import annotations

from typing import Protocol

from relay.actions.release import check_hidden_release, split_trace
from relay.actions.tag import TAG_ACTION, TAG_EXPOSURE, TAG_RULE, Tags, exposure_text
from relay.codes import Reply
from relay.envelope import Envelope
from relay.errors import UpstreamPermanentError, UpstreamTransientError
from relay.inspect.parsed import ParsedMessage, parse_message
from relay.quarantine.store import RELEASE_SPLIT, QuarantineStore, StoredMessage

__all__ = ["SplitRunner", "release_split"]


class SplitRunner(Protocol):
    """The split action's delivery (``relay.actions.split_delivery.SplitDelivery``)."""

    async def run(self, env: Envelope, message: ParsedMessage, tags: Tags, trace: bytes) -> Reply:
        """Deliver each copy not yet in the ledger; the reply a client would get."""
        ...


def _envelope(stored: StoredMessage) -> Envelope:
    return Envelope(
        mail_from=stored.mail_from,
        rcpt_tos=stored.rcpt_tos,
        mail_options=stored.mail_options,
        client_ip=stored.client_ip,
        client_helo=stored.client_helo,
        queue_id=stored.queue_id,
        auth_user=stored.auth_user,
    )


async def release_split(
    store: QuarantineStore, splitter: SplitRunner, message_id: str, actor: str, lease: float
) -> StoredMessage:
    """Claim, deliver one copy per recipient, mark released; the claim is dropped on failure.

    Raises what :meth:`QuarantineStore.claim` raises, CalendarAttendeesVisible
    (copies would still show the attendees), or UpstreamTransientError with the
    split's reply when not every copy went (the rest go on the next try)."""
    stored = await store.claim(message_id, actor, lease)
    try:
        check_hidden_release(stored)
        trace, client = split_trace(parse_message(stored.message))
        tags = [
            (TAG_ACTION, "split; released"),
            (TAG_RULE, stored.rule or "none"),
            (TAG_EXPOSURE, exposure_text(stored.exposure)),
        ]
        reply = await splitter.run(_envelope(stored), client, tags, trace)
        if not reply.is_success:
            error = UpstreamPermanentError if reply.is_permanent else UpstreamTransientError
            raise error(str(reply), kind="split", reply=reply)
        return await store.mark_released(message_id, actor, RELEASE_SPLIT)
    except BaseException:
        await store.release_claim(message_id, actor)
        raise
