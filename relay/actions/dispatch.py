"""Carrying out a Verdict on the SMTP path: the reply to end of DATA comes from here.

Rule one holds throughout: ``250`` only once the upstream accepted the
message (or every split copy) or the quarantine committed it; a transient
problem gives a 4xx so the client's queue retries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from structlog.typing import FilteringBoundLogger

from relay import codes
from relay.actions.bounce import build_split_bounce
from relay.actions.notices import NoticeExtra, build_notice, should_notify
from relay.actions.notify import NoticeSender
from relay.actions.ports import ActionMetrics, Deliverer, LiveTransaction, Redact, domain_only
from relay.actions.replies import held_reply, reject_reply
from relay.actions.rewrite import rewrite_message
from relay.actions.split_claims import SplitClaims
from relay.actions.split_delivery import SplitDelivery
from relay.actions.tag import sanitise, tag_pieces, verdict_tags
from relay.codes import Reply
from relay.envelope import Envelope
from relay.errors import StoreError, UpstreamError
from relay.inspect.domains import DomainMatcher
from relay.inspect.parsed import ParsedMessage
from relay.policy.verdict import Verdict
from relay.quarantine.store import NewMessage, QuarantineStore
from relay.quarantine.subject import decode_subject
from relay.settings import Action, Settings

__all__ = ["Dispatcher", "HeldHook", "Outcome"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an action did: the client's ``reply`` and the quarantine id, if held."""

    reply: Reply
    quarantine_id: str | None = None
    notice_extra: NoticeExtra | None = None


class HeldHook(Protocol):
    """Sender self-service (relay/review/): told of every held message."""

    async def held(self, quarantine_id: str, envelope: Envelope, rule: str | None) -> NoticeExtra:
        """Start the message's undo hold if its rule has one; what its notice adds."""
        ...


_Handler = Callable[[Envelope, ParsedMessage, Verdict, LiveTransaction, bytes], Awaitable[Outcome]]


class Dispatcher:
    """Turns a Verdict into upstream deliveries, a quarantine entry or a refusal."""

    def __init__(
        self,
        *,
        upstream: Deliverer,
        store: QuarantineStore,
        matcher: DomainMatcher,
        settings: Settings,
        log: FilteringBoundLogger,
        metrics: ActionMetrics | None = None,
        redact: Redact = domain_only,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        notice_retry_delay: float = 5.0,
    ) -> None:
        self._upstream = upstream
        self._store = store
        self._matcher = matcher
        self._settings = settings
        self._log = log
        self._metrics = metrics
        self._redact = redact
        self._clock = clock
        self.notices = NoticeSender(
            upstream, log=log, metrics=metrics, redact=redact, retry_delay=notice_retry_delay
        )
        claims = SplitClaims(
            store, lease=settings.quarantine.claim_lease, wait=settings.quarantine.claim_wait,
            log=log, metrics=metrics,
        )  # fmt: skip
        self.splitter = SplitDelivery(
            upstream=upstream, store=store, matcher=matcher, log=log, redact=redact,
            on_store_error=self._store_failed, on_refused=self._bounce, claims=claims,
        )  # fmt: skip
        self._handlers = self._handler_table()
        #: Set by app.py when sender self-service is on.
        self.held_hook: HeldHook | None = None

    def _handler_table(self) -> dict[Action, _Handler]:
        return {
            Action.PASS: self._pass,
            Action.TAG: self._tag,
            Action.REWRITE: self._rewrite,
            Action.SPLIT: self._split,
            Action.REJECT: self._reject,
            Action.QUARANTINE: self._quarantine,
        }

    async def act(
        self,
        envelope: Envelope,
        message: ParsedMessage,
        verdict: Verdict,
        live: LiveTransaction,
        trace_header: bytes,
    ) -> Reply:
        """Carry out ``verdict`` on the client's ``message`` (the one parsed,
        normalised message that was inspected); return the reply to end of
        DATA.  ``trace_header`` is prepended to whatever is delivered or held."""
        outcome = await self._handlers[verdict.action](
            envelope, message, verdict, live, trace_header
        )
        if outcome.reply.is_success or verdict.action is Action.REJECT:
            self._notify(envelope, message, verdict, outcome)
        return outcome.reply

    async def close(self, timeout: float = 10.0) -> None:
        """Let pending notices finish (up to ``timeout`` seconds)."""
        await self.notices.close(timeout)

    # -- the actions -------------------------------------------------------------

    async def _forward(self, live: LiveTransaction, *pieces: bytes | memoryview) -> Outcome:
        # Header and body go as pieces: ``trace + data`` would copy the message.
        try:
            return Outcome(await live.data(*pieces))
        except UpstreamError as exc:
            return Outcome(exc.reply)

    async def _pass(
        self,
        env: Envelope,
        msg: ParsedMessage,
        verdict: Verdict,
        live: LiveTransaction,
        trace: bytes,
    ) -> Outcome:
        return await self._forward(live, trace, sanitise(msg))

    async def _tag(
        self,
        env: Envelope,
        msg: ParsedMessage,
        verdict: Verdict,
        live: LiveTransaction,
        trace: bytes,
    ) -> Outcome:
        return await self._forward(live, trace, *tag_pieces(msg, verdict))

    async def _rewrite(
        self,
        env: Envelope,
        msg: ParsedMessage,
        verdict: Verdict,
        live: LiveTransaction,
        trace: bytes,
    ) -> Outcome:
        result = rewrite_message(msg, self._matcher, tags=verdict_tags(verdict))
        self._log.info(
            "message_rewritten", queue_id=env.queue_id, removed=result.removed,
            dkim_broken=result.dkim_broken,
        )  # fmt: skip
        return await self._forward(live, trace, *result.pieces)

    async def _reject(
        self,
        env: Envelope,
        msg: ParsedMessage,
        verdict: Verdict,
        live: LiveTransaction,
        trace: bytes,
    ) -> Outcome:
        await self._abort(live, env)
        return Outcome(reject_reply(verdict))

    async def _quarantine(
        self,
        env: Envelope,
        msg: ParsedMessage,
        verdict: Verdict,
        live: LiveTransaction,
        trace: bytes,
    ) -> Outcome:
        await self._abort(live, env)
        try:
            quarantine_id = await self._store.put(
                NewMessage.from_verdict(env, msg.data, verdict, trace=trace)
            )
        except StoreError as exc:
            self._store_failed("quarantine_put", env, exc)
            return Outcome(codes.STORE_FAILED)
        self._log.info("message_held", queue_id=env.queue_id, quarantine_id=quarantine_id)
        extra = await self._held(quarantine_id, env, verdict)
        return Outcome(held_reply(quarantine_id), quarantine_id, extra)

    async def _held(
        self, quarantine_id: str, env: Envelope, verdict: Verdict
    ) -> NoticeExtra | None:
        if self.held_hook is None:
            return None
        try:
            return await self.held_hook.held(quarantine_id, env, verdict.rule)
        except StoreError as exc:  # held all the same: it waits for a reviewer instead
            self._store_failed("self_service_hold", env, exc)
            return None

    async def _split(
        self,
        env: Envelope,
        msg: ParsedMessage,
        verdict: Verdict,
        live: LiveTransaction,
        trace: bytes,
    ) -> Outcome:
        await self._abort(live, env)
        return Outcome(await self.splitter.run(env, msg, verdict_tags(verdict), trace))

    # -- helpers -------------------------------------------------------------------

    async def _abort(self, live: LiveTransaction, env: Envelope) -> None:
        try:
            await live.abort()
        except Exception as exc:  # nothing was sent; a broken connection changes no outcome
            self._log.warning("upstream_abort_failed", queue_id=env.queue_id, error=str(exc))

    def _store_failed(self, what: str, env: Envelope, exc: StoreError) -> None:
        if self._metrics is not None:
            self._metrics.store_error()
        self._log.error("store_failed", operation=what, queue_id=env.queue_id, error=str(exc))

    def _notify(
        self, env: Envelope, msg: ParsedMessage, verdict: Verdict, outcome: Outcome
    ) -> None:
        notifications = self._settings.notifications
        if not should_notify(notifications, self._matcher, env, verdict, msg):
            return
        notice = build_notice(
            envelope=env, verdict=verdict, quarantine_id=outcome.quarantine_id,
            from_address=notifications.from_address, hostname=self._settings.smtp.hostname,
            subject=decode_subject(msg), now=self._clock(), extra=outcome.notice_extra,
        )  # fmt: skip
        after = None if outcome.quarantine_id is None else self._notice_audit(outcome.quarantine_id)
        self.notices.send(env.mail_from, notice, after)

    def _notice_audit(self, quarantine_id: str) -> Callable[[bool], Awaitable[None]]:
        """Record the held message's notice in its history (never the address)."""

        async def audit(went: bool) -> None:
            result = "sent" if went else "failed"
            await self._store.add_audit("ccguard", "notice", quarantine_id, result, "to=sender")

        return audit

    def _bounce(self, env: Envelope, msg: ParsedMessage, refused: Mapping[str, Reply]) -> None:
        """Tell the sender (any, but never ``<>``) which split copies were refused
        for good: after a 250 nobody else will."""
        if not env.mail_from:
            return
        bounce = build_split_bounce(
            mail_from=env.mail_from, refused=refused,
            from_address=self._settings.notifications.from_address,
            hostname=self._settings.smtp.hostname, subject=decode_subject(msg),
            now=self._clock(),
        )  # fmt: skip
        self._log.info("split_bounce", queue_id=env.queue_id, refused=len(refused))
        self.notices.send(env.mail_from, bounce)
