"""The quarantine store interface: held messages, the split ledger and the audit log.

Callers (the quarantine and split actions, the admin web UI, the CLI) code
against :class:`QuarantineStore` only; :func:`relay.quarantine.open_store`
picks the backend (SQLite now, PostgreSQL later) from ``[quarantine] database``.

Every method is ``async``.  Every failure to read or write raises
:class:`relay.errors.StoreError` (never a raw driver exception);
:class:`~relay.errors.QuarantineNotFound` and
:class:`~relay.errors.QuarantineStateError` are its subclasses for a missing
id and for a message that is no longer ``held``.

The store never writes audit entries by itself: whoever acts on behalf of an
admin (web UI, CLI) calls :meth:`QuarantineStore.add_audit` with the result.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from relay.envelope import Envelope
    from relay.policy.verdict import Verdict
    from relay.quarantine.requests import DelayTimer, ReleaseRequest
    from relay.quarantine.search import AuditPage, AuditQuery, MessageQuery
    from relay.quarantine.stats import PeriodRow

__all__ = [
    "CLAIM_STALE_AFTER",
    "DELETED",
    "HELD",
    "RELEASED",
    "RELEASE_AS_IS",
    "RELEASE_MODES",
    "RELEASE_REWRITE",
    "RELEASE_SPLIT",
    "STATUSES",
    "AuditEntry",
    "Lease",
    "MessageSummary",
    "NewMessage",
    "Page",
    "QuarantineStats",
    "QuarantineStore",
    "StoredMessage",
    "release_key",
]

HELD = "held"
RELEASED = "released"
DELETED = "deleted"
STATUSES: tuple[str, ...] = (HELD, RELEASED, DELETED)

RELEASE_AS_IS = "as-is"
"""Release mode: deliver the stored bytes unchanged."""
RELEASE_REWRITE = "rewrite"
"""Release mode: deliver with external recipients hidden (the rewrite action)."""
RELEASE_SPLIT = "split"
"""Release mode: one copy per recipient (the split action), chosen by the sender."""
RELEASE_MODES: tuple[str, ...] = (RELEASE_AS_IS, RELEASE_REWRITE, RELEASE_SPLIT)

CLAIM_STALE_AFTER = 30.0
"""Seconds after which a release claim that was not renewed counts as abandoned (its
holder crashed): the releasing process renews it while it delivers
(:meth:`QuarantineStore.renew_claim`), ``[quarantine] claim_lease`` sets it."""


def release_key(message_id: str) -> str:
    """The ledger key under which a release records each recipient it is done with."""
    return f"release:{message_id}"


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to hold.  The store adds the id, status, subject and size.

    ``exposure`` is the address-free counts dict (``Exposure.counts()``).
    ``received_at`` defaults to "now" (epoch seconds) when ``None``.  The bytes
    held are ``trace + message``: ccguard's Received header is passed apart so a
    large message is not copied just to put it in front.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: bytes
    mail_options: tuple[str, ...] = ()
    client_ip: str = ""
    client_helo: str = ""
    queue_id: str = ""
    action: str = "quarantine"
    rule: str | None = None
    reason: str = ""
    exposure: Mapping[str, Any] = field(default_factory=dict)
    received_at: float | None = None
    trace: bytes = b""
    auth_user: str | None = None

    @classmethod
    def from_verdict(
        cls, envelope: Envelope, message: bytes, verdict: Verdict, *, trace: bytes = b""
    ) -> NewMessage:
        """Build from the SMTP envelope, the message bytes (after ``trace``) and the verdict."""
        return cls(
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=message,
            mail_options=tuple(envelope.mail_options),
            client_ip=envelope.client_ip,
            client_helo=envelope.client_helo,
            queue_id=envelope.queue_id,
            action=str(verdict.action),
            rule=verdict.rule,
            reason=verdict.reason,
            exposure=verdict.exposure.counts(),
            trace=trace,
            auth_user=envelope.auth_user,
        )


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """One quarantined message WITHOUT its bytes (what :meth:`QuarantineStore.list` returns).

    ``subject`` is the decoded Subject header ("" if none).  ``size`` is the
    length of the stored message in bytes (kept after a delete wipes them).
    ``released_*`` are set once released; ``deleted_*`` once deleted.
    """

    id: str
    received_at: float
    status: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    mail_options: tuple[str, ...]
    client_ip: str
    client_helo: str
    queue_id: str
    subject: str
    size: int
    action: str
    rule: str | None
    reason: str
    exposure: Mapping[str, Any]
    released_at: float | None = None
    released_by: str | None = None
    release_mode: str | None = None
    deleted_at: float | None = None
    deleted_by: str | None = None
    claimed_by: str | None = None
    claimed_at: float | None = None
    #: The SMTP AUTH user that sent it (``None``: the client did not log in).
    auth_user: str | None = None


@dataclass(frozen=True, slots=True)
class StoredMessage(MessageSummary):
    """One quarantined message with its bytes (``b""`` once deleted: bytes are wiped).

    ``claim_taken_over``: set only on what :meth:`QuarantineStore.claim` returns,
    True when the claim replaced an expired one (its holder had crashed or stalled).
    """

    message: bytes = b""
    claim_taken_over: bool = False


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing, newest first; ``total`` counts every match."""

    items: tuple[MessageSummary, ...]
    total: int
    limit: int
    offset: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.items) < self.total


@dataclass(frozen=True, slots=True)
class QuarantineStats:
    """``counts`` has every status in :data:`STATUSES` (0 if none)."""

    counts: Mapping[str, int]
    oldest_held_at: float | None

    @property
    def held(self) -> int:
        return self.counts.get(HELD, 0)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One admin action: who did what to which message, and how it ended."""

    id: int
    at: float
    actor: str
    action: str
    target: str
    result: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim on a key (a split message) held by one attempt in one process.

    ``holder`` is unique per attempt; ``token`` (the fencing token) grows by
    one each time the key changes hands.  A ledger write made under the lease
    (:meth:`QuarantineStore.record_copies_fenced`) is refused once the key has
    changed hands.  ``taken_over``: the previous holder's lease had expired
    without being dropped (that holder crashed or stalled).
    """

    key: str
    holder: str
    token: int
    taken_over: bool = False


@runtime_checkable
class QuarantineStore(Protocol):
    """Durable store of held messages, the split ledger and the audit log."""

    async def open(self) -> None:
        """Open (create / migrate) the store; raise StoreError if unusable."""

    async def close(self) -> None:
        """Release connections and threads; safe to call twice."""

    async def put(self, new: NewMessage) -> str:
        """Hold a message; durable on disk before it returns; returns a new unguessable id."""

    async def get(self, message_id: str) -> StoredMessage | None:
        """The message with its bytes, or None if unknown."""

    async def list(
        self,
        *,
        status: str | None = None,
        rule: str | None = None,
        sender: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page:
        """Summaries (no bytes) newest first; ``sender`` matches mail_from case-insensitively."""

    async def claim(
        self, message_id: str, actor: str, stale_after: float = CLAIM_STALE_AFTER
    ) -> StoredMessage:
        """Atomically claim a held message for release by ``actor``; returns it.

        Succeeds only if it is held and nobody holds a claim younger than
        ``stale_after`` seconds (the result's ``claim_taken_over`` says whether an
        older, expired claim was replaced).  Raises QuarantineNotFound,
        QuarantineStateError (not held) or QuarantineClaimedError (someone else
        is releasing it).
        """

    async def release_claim(self, message_id: str, actor: str) -> None:
        """Drop ``actor``'s claim (the release did not complete); no-op if not theirs."""

    async def renew_claim(self, message_id: str, actor: str) -> bool:
        """Refresh ``actor``'s release claim (it is still delivering); False if it
        no longer holds it (expired and taken over, released or deleted)."""

    async def mark_released(self, message_id: str, actor: str, mode: str) -> StoredMessage:
        """held (claimed by ``actor``) → released; raises QuarantineNotFound /
        QuarantineStateError / QuarantineClaimedError (``actor`` holds no claim)."""

    async def delete(self, message_id: str, actor: str) -> None:
        """held → deleted and the bytes wiped; raises QuarantineNotFound /
        QuarantineStateError / QuarantineClaimedError (a release is under way)."""

    async def expire(self, cutoff_epoch: float) -> int:
        """Purge messages (any status) received before ``cutoff_epoch`` and their
        release ledger rows; returns the count."""

    async def stats(self) -> QuarantineStats:
        """Count per status and the oldest held ``received_at``."""

    async def check_writable(self) -> None:
        """A real write in a transaction (rolled back); raises StoreError if it fails."""

    async def copies_done(self, key: str) -> set[str]:
        """Split ledger: ids of the copies of ``key`` already delivered."""

    async def record_copy(self, key: str, copy_id: str) -> None:
        """Split ledger: copy delivered; durable before it returns; idempotent."""

    async def record_copies(self, key: str, copy_ids: Sequence[str]) -> None:
        """Split ledger: several entries in one transaction (all durable, or none);
        durable before it returns; idempotent."""

    async def acquire_lease(self, key: str, holder: str, ttl: float) -> Lease | None:
        """Take the lease on ``key`` for ``ttl`` seconds if nobody holds a live one;
        None if someone does (the caller waits and tries again)."""

    async def renew_lease(self, lease: Lease, ttl: float) -> bool:
        """Extend ``lease`` to ``ttl`` seconds from now; False if the key changed hands."""

    async def drop_lease(self, lease: Lease) -> None:
        """Give ``lease`` up (the attempt is over); no-op if the key changed hands."""

    async def record_copies_fenced(self, lease: Lease, copy_ids: Sequence[str]) -> None:
        """:meth:`record_copies` under ``lease.key``, in the same transaction as a check
        that ``lease`` still holds the key; raises LeaseLostError (nothing recorded) if not."""

    async def expire_ledger(self, cutoff_epoch: float) -> int:
        """Drop split-ledger rows recorded before ``cutoff_epoch``; returns the count.
        Release rows (:func:`release_key`) live as long as their message."""

    async def add_audit(
        self, actor: str, action: str, target: str, result: str, detail: str = ""
    ) -> None:
        """Append one audit entry (durable before it returns)."""

    async def list_audit(
        self, limit: int = 100, target: str | None = None
    ) -> builtins.list[AuditEntry]:
        """Audit entries newest first, optionally only those about ``target``."""

    # -- sender self-service (issue 14): tokens, release requests, undo holds ------
    # Rows live in relay/quarantine/sqlite_requests.py and pg_requests.py.

    async def use_token(self, token_id: str, message_id: str, action: str) -> bool:
        """Record a self-service token as used by ``action``; False if it was used
        before (one conditional insert: exactly one use wins)."""

    async def token_used(self, token_id: str) -> str | None:
        """The action a token was used for, or None if it is unused."""

    async def add_request(
        self, message_id: str, requester: str, justification: str, approvals_needed: int = 1
    ) -> ReleaseRequest:
        """A pending release request for a held message; raises QuarantineNotFound,
        QuarantineStateError (not held) or RequestStateError (one is pending already)."""

    async def get_request(self, request_id: str) -> ReleaseRequest | None:
        """The request with its approvals, or None."""

    async def list_requests(
        self, *, status: str | None = None, message_id: str | None = None, limit: int = 100
    ) -> builtins.list[ReleaseRequest]:
        """Requests newest first, optionally only one status or one message's."""

    async def approve_request(
        self, request_id: str, reviewer: str, comment: str = ""
    ) -> ReleaseRequest:
        """Add an approval; ``approved`` once it has ``approvals_needed``.  Raises
        RequestNotFound, RequestStateError (not pending) or FourEyesError (the
        reviewer made the request or approved it already)."""

    async def deny_request(
        self, request_id: str, reviewer: str, comment: str = ""
    ) -> ReleaseRequest:
        """pending → denied; raises RequestNotFound / RequestStateError."""

    async def set_delay(self, message_id: str, deliver_at: float, mode: str) -> None:
        """Start the undo-hold timer: deliver with ``mode`` at ``deliver_at`` (epoch)."""

    async def get_delay(self, message_id: str) -> DelayTimer | None:
        """The message's undo-hold timer, or None."""

    async def due_delays(self, limit: int = 50) -> builtins.list[DelayTimer]:
        """Pending timers whose time has come, of messages still held."""

    async def finish_delay(self, message_id: str, status: str) -> bool:
        """pending → ``status`` (``done`` / ``cancelled``); False if not pending."""

    # -- workbench: search, audit listing (relay/quarantine/search.py) -------

    async def search(self, query: MessageQuery, *, limit: int = 50, offset: int = 0) -> Page:
        """Summaries of the messages matching ``query`` newest first, with the total;
        the matching rules are in :mod:`relay.quarantine.search`."""

    async def search_audit(
        self, query: AuditQuery, *, limit: int = 100, offset: int = 0
    ) -> AuditPage:
        """Audit entries matching ``query`` newest first, with the total."""

    # -- overview -------------------------------------------------------------

    async def period_rows(self, start: float, end: float) -> builtins.list[PeriodRow]:
        """Messages received, released or deleted in ``[start, end)`` (epoch seconds),
        oldest first, as address-free :class:`~relay.quarantine.stats.PeriodRow` rows (the
        sender aside); raises StoreError past ``MAX_PERIOD_ROWS``."""
