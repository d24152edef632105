"""A message's history panel and its recipients marked internal / external (detail page)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from relay.inspect.domains import DomainMatcher
from relay.quarantine.search import AuditQuery
from relay.quarantine.store import AuditEntry, QuarantineStore, StoredMessage

__all__ = ["HistoryRow", "history_of", "marked_recipients"]


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One line of a message's history: an audit entry, or its arrival."""

    at: float
    actor: str
    action: str
    result: str
    detail: str


async def history_of(store: QuarantineStore, message: StoredMessage) -> list[HistoryRow]:
    """The message's history, oldest first: its arrival, then every audit entry about it
    (reviewers' views and decisions, and whatever else wrote one, e.g. a sender's request)."""
    page = await store.search_audit(AuditQuery(target=message.id), limit=500)
    arrival = HistoryRow(
        message.received_at, "ccguard", "received", message.action,
        f"rule={message.rule or '-'} queue_id={message.queue_id or '-'}",
    )  # fmt: skip
    rows = [_row(e) for e in reversed(page.items)]
    return [arrival, *rows]


def _row(entry: AuditEntry) -> HistoryRow:
    return HistoryRow(entry.at, entry.actor, entry.action, entry.result, entry.detail)


def marked_recipients(request: Request, rcpts: tuple[str, ...]) -> list[tuple[str, bool]]:
    """Each envelope recipient with True when it is at one of the organisation's domains."""
    matcher: DomainMatcher = request.app.state.ccguard_matcher
    return [(r, matcher.is_internal_address(r)) for r in rcpts]
