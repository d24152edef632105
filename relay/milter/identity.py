"""What names a message across the client's retries through the MTA (pure).

The split ledger knows a retry by its key: the sender and the client's bytes
(:func:`relay.actions.split.split_key`).  Behind a milter, the bytes are the
MTA's: Postfix's cleanup appends the fields a message lacks at the end of its
header block before any milter sees it, ``Message-Id: <STAMP.QUEUEID@host>`` and
``Date:`` with the arrival time among them (for clients in
``local_header_rewrite_clients``, or with ``always_add_missing_headers``).  Both
change at every retry, and with them the key: every copy already delivered was
sent again.  So the milter's key leaves those two fields out: the Message-Id that
carries this transaction's queue id, and a Date written in Postfix's own format,
both only among the fields Postfix may have appended last.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from relay.actions.split import split_key
from relay.envelope import Envelope
from relay.inspect.parsed import HeaderField, ParsedMessage

__all__ = ["added_by_mta", "retry_key"]

#: What Postfix's cleanup appends, in this order, when the client sent none.
_APPENDED = ("message-id", "date", "from")
_MAY_APPEND = {*_APPENDED, *(f"resent-{name}" for name in _APPENDED), "to"}
#: Postfix's mail_date(): "Tue,  1 Dec 2026 13:22:07 +0000 (UTC)".
_POSTFIX_DATE = re.compile(
    rb"[ \t]*[A-Z][a-z]{2}, [ 0-9][0-9] [A-Z][a-z]{2} [0-9]{4} "
    rb"[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4} \([^()\r\n]*\)\r\n"
)


def _postfix_message_id(queue_id: str) -> re.Pattern[bytes]:
    # "<20261201132207.4F2AB1234@host>", or "<QUEUEID@host>" with long queue ids.
    qid = re.escape(queue_id.encode("ascii", "surrogateescape"))
    return re.compile(rb"[ \t]*<(?:[0-9]{14}\.)?" + qid + rb"@[^<>\s]+>\r\n")


def added_by_mta(fields: Sequence[HeaderField], queue_id: str) -> set[int]:
    """Indexes of the Message-Id and Date fields the MTA appended (see the module doc)."""
    message_id = _postfix_message_id(queue_id) if queue_id else None
    found: set[int] = set()
    for i in range(len(fields) - 1, max(-1, len(fields) - 5), -1):
        field = fields[i]
        if field.key not in _MAY_APPEND:
            break
        pattern = {"message-id": message_id, "date": _POSTFIX_DATE}.get(
            field.key.removeprefix("resent-")
        )
        if pattern is not None and pattern.fullmatch(field.raw_value):
            found.add(i)
    return found


def retry_key(envelope: Envelope, message: ParsedMessage) -> str:
    """The split ledger's key for ``message`` received through the MTA: the same for
    every retry of the client's message, whatever the MTA appended to it."""
    dropped = added_by_mta(message.fields, envelope.queue_id)
    if not dropped:
        return split_key(envelope, message.data)
    head = b"".join(f.raw for i, f in enumerate(message.fields) if i not in dropped)
    end_of_fields = sum(len(f.raw) for f in message.fields)
    return split_key(envelope, head + message.data[end_of_fields:])
