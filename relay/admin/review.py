"""What an admin can do to a held message, with the audit trail; shared by web, API and CLI.

Every call writes one audit entry (``store.add_audit``) and one structured log
line with who, what, which message and the result.  Log lines and audit
details carry ids, modes and reply codes only, never a message's addresses.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from relay.actions.ports import AcceptHook
from relay.actions.release import ReleaseAttempt, check_hidden_release
from relay.actions.renewal import keep_renewed
from relay.actions.split_claims import ClaimMetrics
from relay.admin.preview import MessagePreview, preview_message
from relay.admin.releasing import REFUSED_PREFIX, ReleaseDeferred, ReleaseProgress, ReleaseReport
from relay.codes import Reply
from relay.errors import (
    CalendarAttendeesVisible,
    QuarantineClaimedError,
    QuarantineNotFound,
    QuarantineStateError,
    StoreError,
    UpstreamError,
    UpstreamPermanentError,
)
from relay.quarantine.store import (
    CLAIM_STALE_AFTER,
    RELEASE_AS_IS,
    RELEASE_REWRITE,
    QuarantineStore,
    StoredMessage,
    release_key,
)

__all__ = [
    "MODE_AS_IS",
    "MODE_HIDDEN",
    "PUBLIC_MODES",
    "EventLog",
    "Releaser",
    "Review",
    "Viewed",
    "public_mode",
    "store_mode",
]

T = TypeVar("T")
MODE_AS_IS = "as-is"
MODE_HIDDEN = "hidden"
PUBLIC_MODES: tuple[str, ...] = (MODE_AS_IS, MODE_HIDDEN)
_STORE_MODES = {MODE_AS_IS: RELEASE_AS_IS, MODE_HIDDEN: RELEASE_REWRITE}


def store_mode(mode: str) -> str:
    """The store's release-mode constant for a public mode (``as-is`` / ``hidden``)."""
    return _STORE_MODES[mode]


def public_mode(stored: str | None) -> str | None:
    """The public name (``as-is`` / ``hidden``) of a stored release mode; None stays None."""
    if stored is None:
        return None
    return next((public for public, kept in _STORE_MODES.items() if kept == stored), stored)


class Releaser(Protocol):
    """Delivers a held message upstream (``relay.actions.release.QuarantineReleaser``)."""

    async def release(
        self,
        stored: StoredMessage,
        mode: str,
        rcpts: Sequence[str] | None = None,
        *,
        on_accept: AcceptHook | None = None,
    ) -> ReleaseAttempt:
        """Deliver ``stored`` to ``rcpts``; per-recipient outcome, or raise UpstreamError.
        ``on_accept(accepted)`` is awaited right after the upstream's 250."""
        ...


class EventLog(Protocol):
    """The structured logger (a structlog bound logger)."""

    def info(self, event: str, **kw: Any) -> Any:
        """Write one event."""
        ...


def _conflict_detail(exc: QuarantineStateError) -> str:
    if isinstance(exc, QuarantineClaimedError):
        return f"status=being-released by={exc.claimed_by}"
    return f"status={exc.status}"


@dataclass(frozen=True, slots=True)
class Viewed:
    """A viewed message and its preview (None when its bytes were wiped)."""

    message: StoredMessage
    preview: MessagePreview | None


class Review:
    """Audited view / release / delete / purge of quarantined messages.

    ``claim_lease``: how long a release claim lasts unless renewed; the
    releasing process renews it while it delivers, so a claim left by a
    crashed process blocks other releases for at most that long.
    """

    def __init__(
        self,
        store: QuarantineStore,
        releaser: Releaser | None,
        log: EventLog,
        *,
        claim_lease: float = CLAIM_STALE_AFTER,
        metrics: ClaimMetrics | None = None,
    ) -> None:
        self.store = store
        self.releaser = releaser
        self.log = log
        self.claim_lease = claim_lease
        self._metrics = metrics
        #: Sender self-service (relay/review/desk.py): refuses a release as sent
        #: that needs two reviewers' approval (raises FourEyesError).
        self.as_is_guard: Callable[[StoredMessage, str], Awaitable[None]] | None = None

    def _count(self, event: str) -> None:
        if self._metrics is not None:
            self._metrics.claim_event("release", event)

    async def audit(
        self, actor: str, action: str, target: str, result: str, detail: str = ""
    ) -> None:
        """Write the audit entry and the matching log line."""
        self.log.info(
            "admin_action", actor=actor, action=action, target=target, result=result, detail=detail
        )
        await self.store.add_audit(actor, action, target, result, detail)

    async def view(self, message_id: str, actor: str) -> Viewed:
        """The message with its body and its preview; viewing it is audited.

        The preview is built in a worker thread (a big header block takes a
        while) and the audit entry is written once it is there: ``ok``, with
        ``preview=partial`` when part of the message could not be shown.
        """
        stored = await self.store.get(message_id)
        if stored is None:
            await self.audit(actor, "view", message_id, "not_found")
            raise QuarantineNotFound(message_id)
        try:
            preview = await asyncio.to_thread(preview_message, stored.message)
        except BaseException:
            with contextlib.suppress(StoreError):
                await self.audit(actor, "view", message_id, "error", "preview failed")
            raise
        detail = "preview=partial" if preview.notes else ""
        await self.audit(actor, "view", message_id, "ok", detail)
        return Viewed(stored, preview if stored.message else None)

    async def progress(self, message_id: str) -> ReleaseProgress:
        """Who already got the message from earlier release attempts, who refused it."""
        return ReleaseProgress.from_ledger(await self.store.copies_done(release_key(message_id)))

    async def _audited(self, actor: str, action: str, message_id: str, op: Awaitable[T]) -> T:
        """Run a store decision; audit a missing id or a conflict before re-raising."""
        try:
            return await op
        except QuarantineNotFound:
            await self.audit(actor, action, message_id, "not_found")
            raise
        except QuarantineStateError as exc:
            await self.audit(actor, action, message_id, "conflict", _conflict_detail(exc))
            raise

    async def release(self, message_id: str, mode: str, actor: str) -> ReleaseReport:
        """Claim, deliver to the recipients who do not have it yet, then mark released.

        Raises ReleaseDeferred (some recipients deferred: still held, the others
        have it), UpstreamError (nobody got it: still held), QuarantineNotFound,
        QuarantineStateError / QuarantineClaimedError (another release is under
        way), CalendarAttendeesVisible (``hidden`` asked for an invitation whose
        attendees it cannot hide: nothing delivered, still held) or StoreError.
        Every outcome is audited.
        """
        if mode not in PUBLIC_MODES:
            raise ValueError(f"mode must be one of {', '.join(PUBLIC_MODES)}")
        if self.releaser is None:
            raise RuntimeError("no releaser configured")
        stored = await self._claim(message_id, actor)
        renewer = asyncio.create_task(self._renew(message_id, actor))
        try:
            return await self._release_claimed(self.releaser, stored, mode, actor)
        except BaseException:
            with contextlib.suppress(StoreError):
                await self.store.release_claim(message_id, actor)
            raise
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _claim(self, message_id: str, actor: str) -> StoredMessage:
        """The release claim, counted: taken (over an expired one?) or refused (409)."""
        try:
            stored = await self._audited(
                actor, "release", message_id, self.store.claim(message_id, actor, self.claim_lease)
            )
        except QuarantineClaimedError:
            self._count("refused")
            raise
        self._count("taken")
        if stored.claim_taken_over:
            self._count("taken_over")
            self.log.info("release_claim_taken_over", target=message_id, actor=actor)
        return stored

    async def _renew(self, message_id: str, actor: str) -> None:
        """Keep the release claim fresh while delivering (renewed as if it lasted at most
        CLAIM_STALE_AFTER: a delete counts an older claim as abandoned)."""

        def failed(error: str) -> None:  # tried again at once: see relay/actions/renewal.py
            self.log.info("release_claim_renewal_failed", target=message_id, error=error)

        await keep_renewed(
            lambda: self.store.renew_claim(message_id, actor),
            min(self.claim_lease, CLAIM_STALE_AFTER),
            on_error=failed,
        )
        self._count("lost")
        self.log.info("release_claim_lost", target=message_id, actor=actor)

    async def _release_claimed(
        self, releaser: Releaser, stored: StoredMessage, mode: str, actor: str
    ) -> ReleaseReport:
        if mode == MODE_HIDDEN:
            await self._refuse_visible_attendees(stored, actor)
        elif self.as_is_guard is not None:
            await self.as_is_guard(stored, actor)
        progress = await self.progress(stored.id)
        key = release_key(stored.id)

        async def record(accepted: Sequence[str]) -> None:
            # From the upstream's 250 on they have it: recorded first (one
            # transaction, one fsync), so that a crash leaves the few
            # milliseconds of that commit for a later release to repeat.
            if accepted:
                await self.store.record_copies(key, list(accepted))

        try:
            pending = progress.pending(stored.rcpt_tos)
            attempt = await releaser.release(stored, mode, pending, on_accept=record)
        except UpstreamError as exc:
            detail = f"mode={mode} kind={exc.kind} reply={exc.reply.code} {exc.reply.status}"
            await self.audit(actor, "release", stored.id, "upstream_failed", detail)
            raise
        nobody_has_it = not (progress.delivered or attempt.delivered)
        if attempt.refused and not nobody_has_it:  # once someone has it, retries skip them
            await self.store.record_copies(key, [REFUSED_PREFIX + r for r in attempt.refused])
        report = _report(stored, mode, progress, attempt)
        if report.deferred:
            await self.audit(actor, "release", stored.id, "deferred", report.audit_detail())
            raise ReleaseDeferred(report)
        if nobody_has_it and attempt.refused:
            await self.audit(actor, "release", stored.id, "upstream_failed", report.audit_detail())
            first = next(iter(attempt.refused.values()))
            raise UpstreamPermanentError(str(first), kind="5xx", reply=first)
        return await self._mark_released(report, actor)

    async def _refuse_visible_attendees(self, stored: StoredMessage, actor: str) -> None:
        """Audit and raise when hiding the recipients would still show the attendees."""
        try:
            check_hidden_release(stored)
        except CalendarAttendeesVisible as exc:
            detail = (
                f"mode={MODE_HIDDEN} {exc.code} attendees_external={exc.external} "
                f"truncated={str(exc.truncated).lower()}"
            )
            await self.audit(actor, "release", stored.id, "refused", detail)
            raise

    async def _mark_released(self, report: ReleaseReport, actor: str) -> ReleaseReport:
        message_id, detail = report.message.id, report.audit_detail()
        try:
            updated = await self.store.mark_released(message_id, actor, store_mode(report.mode))
        except StoreError as exc:
            # Delivered and in the ledger: a retry only marks it released.
            result = "conflict" if isinstance(exc, QuarantineStateError) else "store_failed"
            with contextlib.suppress(StoreError):
                await self.audit(actor, "release", message_id, result, detail)
            raise
        await self.audit(actor, "release", message_id, "ok", detail)
        return ReleaseReport(
            updated, report.mode, report.reply, report.delivered, report.total,
            report.deferred, report.refused,
        )  # fmt: skip

    async def delete(self, message_id: str, actor: str) -> None:
        """Mark deleted and wipe the bytes (refused while a release is under way)."""
        await self._audited(actor, "delete", message_id, self.store.delete(message_id, actor))
        await self.audit(actor, "delete", message_id, "ok")

    async def purge(self, cutoff_epoch: float, actor: str) -> int:
        """Remove every message received before ``cutoff_epoch``; returns how many."""
        count = await self.store.expire(cutoff_epoch)
        await self.audit(actor, "purge", "*", "ok", f"cutoff={cutoff_epoch:.0f} removed={count}")
        return count


def _report(
    stored: StoredMessage, mode: str, progress: ReleaseProgress, attempt: ReleaseAttempt
) -> ReleaseReport:
    refused: dict[str, Reply | None] = dict.fromkeys(sorted(progress.refused))
    refused.update(attempt.refused)
    return ReleaseReport(
        message=stored,
        mode=mode,
        reply=attempt.reply,
        delivered=len(progress.delivered | set(attempt.delivered)),
        total=len(set(stored.rcpt_tos)),
        deferred=dict(attempt.deferred),
        refused=refused,
    )
