"""Building the self-service parts from settings and the parts app.py already has.

Given every collaborator explicitly (the store, the releaser, the split
delivery, the notice sender), so only app.py still knows them all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from relay.actions.split_claims import ClaimMetrics
from relay.admin.app import SecurityHeaders
from relay.admin.bodies import BodyLimit
from relay.admin.review import EventLog, Releaser, Review
from relay.admin.sessions import load_session_key
from relay.httpserver import HttpServer
from relay.quarantine.store import QuarantineStore
from relay.review.desk import DecisionMail, RequestDesk
from relay.review.holds import UndoHolds
from relay.review.sender_split import SplitRunner
from relay.review.service import Counter, SelfService
from relay.review.tokens import TokenSigner
from relay.review.web import sender_routes, static_mount
from relay.settings import Settings

__all__ = ["SelfServiceParts", "build_self_service", "sender_server"]


@dataclass(frozen=True, slots=True)
class SelfServiceParts:
    """The audited review shared by admin and sender, the request desk, the sender
    page's service (None unless ``[review] public_url`` is set) and the undo holds."""

    review: Review
    desk: RequestDesk
    service: SelfService | None
    holds: UndoHolds


def build_self_service(
    *,
    settings: Settings,
    store: QuarantineStore,
    releaser: Releaser,
    splitter: SplitRunner,
    send_mail: DecisionMail,
    log: EventLog,
    redact: Callable[[str], str],
    count: Counter = lambda action: None,
    clock: Callable[[], float] = time.time,
    claim_metrics: ClaimMetrics | None = None,
) -> SelfServiceParts:
    """Every self-service part, wired; reads (or creates) the token key file when on."""
    rules = {rule.name: rule for rule in settings.policy.rules}
    review = Review(
        store, releaser, log, claim_lease=settings.quarantine.claim_lease, metrics=claim_metrics
    )
    service = None
    if settings.review.enabled:
        key = load_session_key(settings.review.token_key_file, "review.token_key_file")
        service = SelfService(
            store=store, review=review, splitter=splitter, settings=settings.review,
            signer=TokenSigner(key, settings.review.token_ttl, clock=clock), rules=rules,
            redact=redact, log=log, count=count,
        )  # fmt: skip
    desk = RequestDesk(
        review=review, rules=rules, log=log, send_mail=send_mail, count=count,
        from_address=settings.notifications.from_address, hostname=settings.smtp.hostname,
        link=service.link if service is not None else None,
    )  # fmt: skip
    review.as_is_guard = desk.guard_as_is
    holds = UndoHolds(
        store=store, review=review, rules=rules, settings=settings.review, log=log, count=count,
        link=service.link if service is not None else None, clock=clock,
        lease_ttl=settings.quarantine.claim_lease,
    )  # fmt: skip
    return SelfServiceParts(review, desk, service, holds)


def sender_server(
    parts: SelfServiceParts, settings: Settings
) -> tuple[HttpServer | None, list[BaseRoute]]:
    """The ``[review] listen`` server of the sender page (None when it has none), and the
    routes the admin listener serves instead (none when it has its own server)."""
    if parts.service is None:
        return None, []
    routes = sender_routes(parts.service, settings.admin.trusted_proxies)
    if not settings.review.listen:
        return None, routes
    app = Starlette(
        routes=[*routes, static_mount()],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(BodyLimit, limit=settings.admin.max_request_bytes),
        ],
    )
    return HttpServer("review", app, settings.review.listen), []
