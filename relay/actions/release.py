"""Delivering a held message when an administrator releases it.

The caller (the admin review service) claims the message in the store, asks
:meth:`QuarantineReleaser.release` to deliver it to the recipients that do
not have it yet, records who got it in the ledger and only then marks it
released.  The releaser reports per recipient: accepted, deferred (4xx) or
refused for good (5xx); an :class:`~relay.errors.UpstreamError` means
nothing was delivered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from structlog.typing import FilteringBoundLogger

from relay.actions.ports import AcceptHook, Redact, domain_only
from relay.actions.rewrite import rewrite_message
from relay.actions.split_delivery import copy_options
from relay.actions.tag import TAG_ACTION, TAG_EXPOSURE, TAG_RULE, exposure_text, sanitise
from relay.codes import Reply
from relay.errors import CalendarAttendeesVisible
from relay.inspect.domains import DomainMatcher
from relay.inspect.parsed import ParsedMessage, parse_message
from relay.quarantine.store import RELEASE_AS_IS, RELEASE_REWRITE, StoredMessage

__all__ = [
    "HIDDEN",
    "QuarantineReleaser",
    "ReleaseAttempt",
    "ReleaseTransaction",
    "TransactionOpener",
    "check_hidden_release",
    "release_bytes",
    "split_trace",
]

HIDDEN = "hidden"
"""Alias of :data:`relay.quarantine.RELEASE_REWRITE` (recipients hidden)."""


class ReleaseTransaction(Protocol):
    """An open upstream transaction (``relay.upstream.UpstreamTransaction``)."""

    async def rcpt(self, address: str, options: Sequence[str] = ()) -> Reply:
        """The upstream's answer to one RCPT (success or refusal)."""
        ...

    async def data(self, message: bytes, *, on_accept: AcceptHook | None = None) -> Reply:
        """Send the message; the 250, or raise UpstreamError.  ``on_accept`` is awaited
        right after the 250 is read (before QUIT or pooling); what it raises is raised."""
        ...

    async def abort(self) -> None:
        """RSET: nothing is delivered."""
        ...


class TransactionOpener(Protocol):
    """Opens upstream transactions (``relay.upstream.UpstreamClient``)."""

    async def begin(self, mail_from: str, options: Sequence[str] = ()) -> ReleaseTransaction:
        """MAIL FROM accepted, or raise UpstreamError."""
        ...


@dataclass(frozen=True, slots=True)
class ReleaseAttempt:
    """What one delivery attempt did, per recipient.

    ``reply`` is the upstream's answer to DATA, None when nothing was sent
    (no recipient asked for, or every one refused).  ``deferred`` holds the
    transient (4xx) refusals, ``refused`` the permanent (5xx) ones.
    """

    reply: Reply | None = None
    delivered: tuple[str, ...] = ()
    deferred: Mapping[str, Reply] = field(default_factory=dict)
    refused: Mapping[str, Reply] = field(default_factory=dict)


def check_hidden_release(stored: StoredMessage) -> None:
    """Raise :class:`CalendarAttendeesVisible` when hiding the recipients of
    ``stored`` would still show its calendar attendees: the stored exposure has
    external attendees, or calendar data that could not be read.  The rewrite
    only changes header fields; the ATTENDEE lines go to everyone as they are."""
    calendar = stored.exposure.get("calendar") or {}
    external = int(calendar.get("attendees_external", 0) or 0)
    truncated = bool(calendar.get("truncated", False))
    if external or truncated:
        raise CalendarAttendeesVisible(stored.id, external, truncated)


def release_bytes(stored: StoredMessage, mode: str, matcher: DomainMatcher) -> bytes:
    """What a release delivers: ``as-is`` → the held bytes (minus any foreign
    ``X-CCGuard-*`` field); ``rewrite``/``hidden`` → the rewrite action applied,
    tagged ``X-CCGuard-Action: rewrite; released`` below ccguard's Received
    header, as in live delivery (refused with CalendarAttendeesVisible for an
    invitation whose attendees it cannot hide).  The held bytes are parsed like a message on
    receipt (line endings normalised: rows stored by older versions may have
    bare CR/LF), so a release delivers exactly what is inspected and stripped."""
    if not stored.message:
        raise ValueError(f"quarantined message {stored.id} has no bytes (deleted)")
    held = parse_message(stored.message)
    if mode == RELEASE_AS_IS:
        return sanitise(held)
    if mode in (RELEASE_REWRITE, HIDDEN):
        check_hidden_release(stored)
        tags = [
            (TAG_ACTION, "rewrite; released"),
            (TAG_RULE, stored.rule or "none"),
            (TAG_EXPOSURE, exposure_text(stored.exposure)),
        ]
        trace, client = split_trace(held)
        return trace + rewrite_message(client, matcher, tags=tags).message
    raise ValueError(f"unknown release mode {mode!r}; use {RELEASE_AS_IS!r} or {RELEASE_REWRITE!r}")


def split_trace(held: ParsedMessage) -> tuple[bytes, ParsedMessage]:
    """(ccguard's Received header, the client's message) of a held message.

    The SMTP front stored its trace header first; live delivery puts the tags
    below it, so a release must too.  Nothing is split off a message that
    does not start with a Received field."""
    if not held.fields or held.fields[0].key != "received":
        return b"", held
    return held.fields[0].raw, held.without_first_field()


class QuarantineReleaser:
    """Delivers held messages to their stored envelope recipients."""

    def __init__(
        self,
        upstream: TransactionOpener,
        matcher: DomainMatcher,
        *,
        log: FilteringBoundLogger | None = None,
        redact: Redact = domain_only,
    ) -> None:
        self._upstream = upstream
        self._matcher = matcher
        self._log = log
        self._redact = redact

    async def release(
        self,
        stored: StoredMessage,
        mode: str,
        rcpts: Sequence[str] | None = None,
        *,
        on_accept: AcceptHook | None = None,
    ) -> ReleaseAttempt:
        """Deliver ``stored`` (``mode`` ``as-is`` or ``rewrite``/``hidden``) with its
        stored sender to ``rcpts`` (default: every stored recipient), in one
        transaction.  Raises UpstreamError if the upstream took it for nobody
        because of the connection, MAIL or DATA; refused RCPTs are reported.
        ``on_accept(accepted)`` is awaited right after the upstream's 250 (the
        caller records them there: before QUIT, logging or anything else)."""
        wanted = tuple(dict.fromkeys(stored.rcpt_tos if rcpts is None else rcpts))
        if not wanted:
            return ReleaseAttempt()
        data = release_bytes(stored, mode, self._matcher)
        options = (
            stored.mail_options if mode == RELEASE_AS_IS else copy_options(stored.mail_options)
        )
        txn = await self._upstream.begin(stored.mail_from, options)
        accepted, deferred, refused = await self._recipients(txn, wanted)
        reply = await txn.data(data, on_accept=on_accept) if accepted else None
        if reply is None:
            await txn.abort()
        attempt = ReleaseAttempt(reply, tuple(accepted), deferred, refused)
        self._report(stored.id, mode, attempt)
        return attempt

    @staticmethod
    async def _recipients(
        txn: ReleaseTransaction, rcpts: Sequence[str]
    ) -> tuple[list[str], dict[str, Reply], dict[str, Reply]]:
        accepted: list[str] = []
        deferred: dict[str, Reply] = {}
        refused: dict[str, Reply] = {}
        for rcpt in rcpts:
            reply = await txn.rcpt(rcpt)
            if reply.is_success:
                accepted.append(rcpt)
            elif reply.is_transient:
                deferred[rcpt] = reply
            else:
                refused[rcpt] = reply
        return accepted, deferred, refused

    def _report(self, message_id: str, mode: str, attempt: ReleaseAttempt) -> None:
        if self._log is None:
            return
        for kind, replies in (("deferred", attempt.deferred), ("refused", attempt.refused)):
            for rcpt, reply in replies.items():
                self._log.warning(
                    "release_recipient_" + kind, quarantine_id=message_id,
                    rcpt=self._redact(rcpt), code=reply.code,
                )  # fmt: skip
        self._log.info(
            "message_release_attempt", quarantine_id=message_id, mode=mode,
            delivered=len(attempt.delivered), deferred=len(attempt.deferred),
            refused=len(attempt.refused),
        )  # fmt: skip
