"""The sender's side of a held message: open the link, see it, decide.

Every step is audited with the sender's keyed hash as the actor
(``sender:<hash>``), logged and counted in ``ccguard_self_service_total``.
A link is checked in this order: the client is not throttled, the token
parses, its MAC matches the message and its envelope sender, it has not
expired, it was not used.  A refusal is audited, counted and counts towards
the client's throttle; it never shows which of the checks failed beyond
"not valid", "expired" or "already used".
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from relay.admin.review import MODE_AS_IS, MODE_HIDDEN, EventLog, Review
from relay.credentials.throttle import LoginThrottle
from relay.errors import StoreError
from relay.quarantine.requests import (
    DELAY_CANCELLED,
    DELAY_PENDING,
    PENDING,
    DelayTimer,
    ReleaseRequest,
)
from relay.quarantine.store import HELD, QuarantineStore, StoredMessage
from relay.review.sender_split import SplitRunner, release_split
from relay.review.tokens import ParsedToken, TokenRefused, TokenSigner
from relay.settings import RuleSettings
from relay.settings_review import ReviewSettings

__all__ = [
    "SENDER_PREFIX",
    "SEND_NOW",
    "Counter",
    "DecisionFailed",
    "SelfService",
    "SenderDone",
    "SenderView",
    "Throttled",
]

SENDER_PREFIX = "sender:"
SEND_NOW = "send_now"
MAX_JUSTIFICATION = 2000
_THROTTLE_KEY = "self-service"
Counter = Callable[[str], None]


class DecisionFailed(Exception):
    """The sender's decision could not be carried out (``cause``); the message is
    as it was, and ``token`` is a fresh link to try again with."""

    def __init__(self, cause: Exception, token: str) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.token = token


class Throttled(Exception):
    """Too many refused links from this client: wait ``wait`` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"wait {wait:.0f}s")
        self.wait = wait


@dataclass(frozen=True, slots=True)
class SenderView:
    """What the sender's page shows: the message, the choices left, any hold or request."""

    token: str
    message: StoredMessage
    choices: tuple[str, ...]
    delay: DelayTimer | None
    request: ReleaseRequest | None


@dataclass(frozen=True, slots=True)
class SenderDone:
    """What a sender's decision did (``choice``) and the request it made, if any."""

    choice: str
    message: StoredMessage
    request: ReleaseRequest | None = None


class SelfService:
    """Checks self-service links and carries out the sender's decisions."""

    def __init__(
        self,
        *,
        store: QuarantineStore,
        review: Review,
        splitter: SplitRunner,
        signer: TokenSigner,
        settings: ReviewSettings,
        rules: Mapping[str, RuleSettings],
        redact: Callable[[str], str],
        log: EventLog,
        count: Counter = lambda action: None,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self.store, self.review, self.splitter = store, review, splitter
        self.signer, self.settings, self.rules = signer, settings, rules
        self._redact, self.log, self.count = redact, log, count
        self.throttle = throttle or LoginThrottle(free=settings.max_refusals, base=30.0, cap=900.0)

    def actor(self, mail_from: str) -> str:
        """The audit actor for a sender: never the address, its keyed hash."""
        return SENDER_PREFIX + self._redact(mail_from)

    def link(self, message_id: str, mail_from: str) -> str:
        """A fresh signed link to the page of ``message_id``."""
        return f"{self.settings.public_url}/r/{self.signer.make(message_id, mail_from)}"

    # -- checking a link ---------------------------------------------------

    async def _refuse(self, reason: str, message_id: str, ip: str) -> TokenRefused:
        self.throttle.failure(ip, _THROTTLE_KEY)
        self.count("refused")
        detail = f"reason={reason} ip={ip}"
        self.log.info("self_service_refused", target=message_id, reason=reason)
        with contextlib.suppress(StoreError):
            await self.store.add_audit(
                "(self-service link)", "self_service_link", message_id, "refused", detail
            )
        return TokenRefused(reason, message_id)

    async def _checked(self, token: str, ip: str) -> tuple[ParsedToken, StoredMessage]:
        wait = self.throttle.wait_for(ip, _THROTTLE_KEY)
        if wait > 0:
            self.count("throttled")
            raise Throttled(wait)
        try:
            parsed = self.signer.parse(token)
        except TokenRefused as exc:
            raise await self._refuse(exc.reason, "-", ip) from None
        stored = await self.store.get(parsed.message_id)
        try:
            self.signer.check(parsed, stored.mail_from if stored is not None else None)
        except TokenRefused as exc:
            raise await self._refuse(exc.reason, parsed.message_id, ip) from None
        assert stored is not None
        if await self.store.token_used(parsed.nonce) is not None:
            raise await self._refuse("used", parsed.message_id, ip)
        return parsed, stored

    async def open(self, token: str, ip: str) -> SenderView:
        """The page behind a link (audited as ``self_service_open``); raises
        TokenRefused or Throttled."""
        _, stored = await self._checked(token, ip)
        view = await self._view(token, stored)
        await self.review.audit(
            self.actor(stored.mail_from),
            "self_service_open",
            stored.id,
            "ok",
            f"status={stored.status}",
        )
        self.count("opened")
        return view

    async def _view(self, token: str, stored: StoredMessage) -> SenderView:
        delay = await self.store.get_delay(stored.id)
        pending = await self.store.list_requests(status=PENDING, message_id=stored.id, limit=1)
        request = pending[0] if pending else None
        choices: tuple[str, ...] = ()
        if stored.status == HELD and request is None:
            choices = tuple(self.settings.sender_may)
            rule = self.rules.get(stored.rule or "")
            four_eyes = rule is not None and rule.four_eyes  # as written needs two reviewers
            if delay is not None and delay.status == DELAY_PENDING and not four_eyes:
                choices += (SEND_NOW,)
        return SenderView(token, stored, choices, delay, request)

    # -- deciding ----------------------------------------------------------

    async def act(self, token: str, choice: str, justification: str, ip: str) -> SenderDone:
        """Carry out the sender's ``choice``; the link is used up first (exactly one
        decision per link).  Raises TokenRefused, Throttled, ValueError (a choice
        not offered, or a request without justification) or DecisionFailed
        (with a fresh token: this one is used up)."""
        parsed, stored = await self._checked(token, ip)
        view = await self._view(token, stored)
        justification = justification.strip()
        if choice not in view.choices:
            raise ValueError("that choice is not available for this message")
        if choice == "request" and not justification:
            raise ValueError("say why the message must go as written")
        if not await self.store.use_token(parsed.nonce, stored.id, choice):
            raise await self._refuse("used", stored.id, ip)
        actor = self.actor(stored.mail_from)
        try:
            done = await self._perform(stored, choice, justification[:MAX_JUSTIFICATION], actor)
        except Exception as exc:
            self.count("failed")
            raise DecisionFailed(exc, self.signer.make(stored.id, stored.mail_from)) from exc
        self.count(choice)
        with contextlib.suppress(StoreError):
            await self.store.finish_delay(stored.id, DELAY_CANCELLED)
        return done

    async def _perform(
        self, stored: StoredMessage, choice: str, justification: str, actor: str
    ) -> SenderDone:
        mid = stored.id
        if choice in ("hidden", SEND_NOW):
            mode = MODE_HIDDEN if choice == "hidden" else MODE_AS_IS
            report = await self.review.release(mid, mode, actor)
            return SenderDone(choice, report.message)
        if choice == "split":
            try:
                released = await release_split(
                    self.store, self.splitter, mid, actor, self.review.claim_lease
                )
            except Exception as exc:
                await self.review.audit(
                    actor, "release", mid, "failed", f"mode=split error={type(exc).__name__}"
                )
                raise
            await self.review.audit(actor, "release", mid, "ok", "mode=split")
            return SenderDone(choice, released)
        if choice == "withdraw":
            await self.review.delete(mid, actor)
            return SenderDone(choice, stored)
        rule = self.rules.get(stored.rule or "")
        needed = 2 if rule is not None and rule.four_eyes else 1
        request = await self.store.add_request(mid, actor, justification, needed)
        await self.review.audit(
            actor, "request", mid, "ok", f"request={request.id} approvals_needed={needed}"
        )
        return SenderDone(choice, stored, request)
