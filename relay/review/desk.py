"""Release requests on the reviewers' side: make, approve (four eyes), deny, and tell the sender.

A request asks for a held message to go *as written*.  Approving it adds the
reviewer's approval in the store, which refuses (FourEyesError) the person
who made the request and, for a rule with ``four_eyes = true``, a second
approval by the same reviewer; once a request has every approval it needs,
the message is released as sent, by the last approver.  A message whose
rule has ``four_eyes`` cannot be released as sent any other way: the
guard :meth:`RequestDesk.guard_as_is` is installed in the admin review, so
web, API and CLI all refuse it (403).  Every step is audited; the sender of
a sender-made request gets a mail with the decision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from relay.actions.notices import compose_notice
from relay.admin.releasing import ReleaseReport
from relay.admin.review import MODE_AS_IS, EventLog, Review
from relay.errors import (
    FourEyesError,
    QuarantineNotFound,
    QuarantineStateError,
    RequestNotFound,
    StoreError,
)
from relay.quarantine.requests import APPROVED, ReleaseRequest
from relay.quarantine.store import StoredMessage
from relay.review.service import SENDER_PREFIX, Counter
from relay.settings import RuleSettings

__all__ = ["DecisionMail", "RequestDesk"]

DecisionMail = Callable[[str, bytes], object]
"""Sends one message to one address with the null sender (``NoticeSender.send``)."""


class RequestDesk:
    """Audited release requests with four-eyes approval and the sender's decision mail."""

    def __init__(
        self,
        *,
        review: Review,
        rules: Mapping[str, RuleSettings],
        log: EventLog,
        send_mail: DecisionMail | None = None,
        from_address: str = "postmaster@localhost",
        hostname: str = "localhost",
        count: Counter = lambda action: None,
        link: Callable[[str, str], str] | None = None,
    ) -> None:
        self.review, self.store, self.rules, self.log = review, review.store, rules, log
        self._link = link
        self._send, self._from, self._hostname, self.count = (
            send_mail,
            from_address,
            hostname,
            count,
        )

    def approvals_needed(self, rule: str | None) -> int:
        """2 for a ``four_eyes`` rule, else 1."""
        settings = self.rules.get(rule or "")
        return 2 if settings is not None and settings.four_eyes else 1

    async def guard_as_is(self, stored: StoredMessage, actor: str) -> None:
        """Refuse (FourEyesError) a release as sent of a ``four_eyes`` message that
        has no approved request."""
        if self.approvals_needed(stored.rule) < 2:
            return
        if await self.store.list_requests(status=APPROVED, message_id=stored.id, limit=1):
            return
        await self.review.audit(actor, "release", stored.id, "refused", "four_eyes")
        raise FourEyesError(
            "-",
            actor,
            f"rule {stored.rule} needs two reviewers to release this message as sent: "
            "make a release request and let two other reviewers approve it",
        )

    async def make(self, message_id: str, requester: str, justification: str) -> ReleaseRequest:
        """A reviewer's request to release a held message as sent."""
        stored = await self.store.get(message_id)
        if stored is None:
            raise QuarantineNotFound(message_id)
        request = await self.store.add_request(
            message_id, requester, justification.strip(), self.approvals_needed(stored.rule)
        )
        detail = f"request={request.id} approvals_needed={request.approvals_needed}"
        await self.review.audit(requester, "request", message_id, "ok", detail)
        self.count("request")
        return request

    async def _request(self, request_id: str) -> ReleaseRequest:
        request = await self.store.get_request(request_id)
        if request is None:
            raise RequestNotFound(request_id)
        return request

    async def approve(
        self, request_id: str, reviewer: str, comment: str = ""
    ) -> tuple[ReleaseRequest, ReleaseReport | None]:
        """Add ``reviewer``'s approval; once complete, release as sent and tell the sender.
        Raises FourEyesError (audited), RequestNotFound, RequestStateError, and
        whatever the release raises (the request stays approved: retry the release)."""
        found = await self._request(request_id)
        target = found.message_id
        try:
            await self._not_the_sender(found, reviewer)
            request = await self.store.approve_request(request_id, reviewer, comment.strip())
        except FourEyesError as exc:
            await self.review.audit(
                reviewer, "approve", target, "refused", f"request={request_id} four_eyes: {exc.why}"
            )
            raise
        except QuarantineStateError as exc:
            detail = f"request={request_id} status={exc.status}"
            await self.review.audit(reviewer, "approve", target, "conflict", detail)
            raise
        have = f"{len(request.approvals)}/{request.approvals_needed}"
        await self.review.audit(
            reviewer, "approve", target, "ok", f"request={request_id} approvals={have}"
        )
        self.count("approve")
        if request.status != APPROVED:
            return request, None
        report = await self.review.release(target, MODE_AS_IS, reviewer)
        self.count("approved")
        await self._tell_sender(request, report.message)
        return request, report

    async def _not_the_sender(self, request: ReleaseRequest, reviewer: str) -> None:
        """Refuse the sender of a sender-made request approving it under their reviewer
        login (when that login is their address: the request is theirs)."""
        if not request.requester.startswith(SENDER_PREFIX):
            return
        stored = await self.store.get(request.message_id)
        if stored is not None and stored.mail_from.casefold() == reviewer.casefold():
            raise FourEyesError(
                request.id, reviewer, "you sent this message and made this request; "
                "another reviewer must approve it",
            )  # fmt: skip

    async def deny(self, request_id: str, reviewer: str, comment: str = "") -> ReleaseRequest:
        """pending → denied; audited; the sender is told."""
        target = (await self._request(request_id)).message_id
        request = await self.store.deny_request(request_id, reviewer, comment.strip())
        await self.review.audit(reviewer, "deny", target, "ok", f"request={request_id}")
        self.count("deny")
        stored = await self.store.get(target)
        if stored is not None:
            await self._tell_sender(request, stored)
        return request

    async def _tell_sender(self, request: ReleaseRequest, stored: StoredMessage) -> None:
        if self._send is None or not request.requester.startswith(SENDER_PREFIX):
            return
        if not stored.mail_from:
            return
        approved = request.status == APPROVED
        verdict = "approved" if approved else "denied"
        lines = [
            f"Your request to send your message as written was {verdict}.",
            "",
            f"Subject:  {stored.subject or '(no subject)'}",
            f"Decided:  by {request.decided_by or '?'}",
        ]
        if request.comment:
            lines.append(f"Comment:  {request.comment}")
        outcome = (
            "It has been delivered as you wrote it."
            if approved
            else "It was not delivered as written; it stays held until a reviewer deals with it."
        )
        lines += ["", outcome]
        if not approved and self._link is not None and stored.status == "held":
            lines += [
                "You can still send it with the recipients hidden, one copy each, or",
                f"withdraw it: {self._link(stored.id, stored.mail_from)}",
            ]
        mail = compose_notice(
            from_address=self._from,
            to=stored.mail_from,
            subject=f"Your release request was {verdict}: {stored.subject}",
            body="\n".join(lines) + "\n",
            kind="decision",
            auto_submitted="auto-generated",
            hostname=self._hostname,
            now=datetime.now(UTC),
        )
        with contextlib.suppress(StoreError):
            await self.review.audit(
                "ccguard", "decision_mail", stored.id, "sent", f"request={request.id} {verdict}"
            )
        self._send(stored.mail_from, mail)
