"""Sender self-service records: release requests, approvals, undo-hold timers, used tokens.

Plain typed rows shared by both backends (:mod:`relay.quarantine.sqlite_requests`,
:mod:`relay.quarantine.pg_requests`) and the statements they share.  SQL is
written once with ``:name`` parameters; PostgreSQL gets them as ``%(name)s``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from relay.errors import FourEyesError

__all__ = [
    "APPROVED",
    "DELAY_CANCELLED",
    "DELAY_DONE",
    "DELAY_PENDING",
    "DENIED",
    "PENDING",
    "REQUEST_STATUSES",
    "SQL",
    "Approval",
    "DelayTimer",
    "ReleaseRequest",
    "check_approval",
    "list_requests_sql",
    "new_request_id",
    "pg_sql",
    "request_from_row",
]

PENDING = "pending"
APPROVED = "approved"
DENIED = "denied"
REQUEST_STATUSES: tuple[str, ...] = (PENDING, APPROVED, DENIED)

DELAY_PENDING = "pending"
DELAY_DONE = "done"
DELAY_CANCELLED = "cancelled"


def new_request_id() -> str:
    """An unguessable request id."""
    return "r" + secrets.token_hex(10)


@dataclass(frozen=True, slots=True)
class Approval:
    """One reviewer's approval of a request."""

    reviewer: str
    at: float
    comment: str = ""


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    """A request to release a held message as sent, and what reviewers decided.

    ``requester`` is the sender's hash (``sender:…``) or a reviewer's name;
    ``approvals_needed`` is 2 for a ``four_eyes`` rule, else 1.  ``decided_by``
    and ``comment`` are the final decision's (the last approver, or who denied).
    """

    id: str
    message_id: str
    requester: str
    justification: str
    created_at: float
    status: str
    approvals_needed: int
    decided_at: float | None = None
    decided_by: str | None = None
    comment: str = ""
    approvals: tuple[Approval, ...] = ()

    @property
    def approvers(self) -> tuple[str, ...]:
        """Who approved so far, in order."""
        return tuple(a.reviewer for a in self.approvals)


@dataclass(frozen=True, slots=True)
class DelayTimer:
    """An undo hold: deliver ``message_id`` with ``mode`` at ``deliver_at`` unless someone acted."""

    message_id: str
    deliver_at: float
    mode: str
    status: str


_REQUEST_COLUMNS = (
    "id, message_id, requester, justification, created_at, status, approvals_needed, "
    "decided_at, decided_by, comment"
)


class SQL:
    """The statements both backends run (``:name`` parameters)."""

    USE_TOKEN = (
        "INSERT INTO used_tokens (token_id, message_id, action, used_at) "
        "VALUES (:token_id, :message_id, :action, :now) ON CONFLICT (token_id) DO NOTHING"
    )
    TOKEN_USED = "SELECT action FROM used_tokens WHERE token_id = :token_id"
    INSERT_REQUEST = (
        f"INSERT INTO release_requests ({_REQUEST_COLUMNS}) VALUES (:id, :message_id, "
        ":requester, :justification, :now, 'pending', :needed, NULL, NULL, '') "
        "ON CONFLICT DO NOTHING"
    )
    MESSAGE_STATUS = "SELECT status FROM messages WHERE id = :message_id"
    GET_REQUEST = f"SELECT {_REQUEST_COLUMNS} FROM release_requests WHERE id = :id"
    APPROVALS = (
        "SELECT reviewer, at, comment FROM request_approvals "
        "WHERE request_id = :id ORDER BY at, reviewer"
    )
    ADD_APPROVAL = (
        "INSERT INTO request_approvals (request_id, reviewer, at, comment) "
        "VALUES (:id, :reviewer, :now, :comment)"
    )
    DECIDE = (
        "UPDATE release_requests SET status = :status, decided_at = :now, "
        "decided_by = :reviewer, comment = :comment WHERE id = :id AND status = 'pending'"
    )
    LIST_REQUESTS = f"SELECT {_REQUEST_COLUMNS} FROM release_requests"
    SET_DELAY = (
        "INSERT INTO delay_timers (message_id, deliver_at, mode, status) "
        "VALUES (:message_id, :deliver_at, :mode, 'pending') ON CONFLICT (message_id) "
        "DO UPDATE SET deliver_at = excluded.deliver_at, mode = excluded.mode, status = 'pending'"
    )
    GET_DELAY = (
        "SELECT message_id, deliver_at, mode, status FROM delay_timers "
        "WHERE message_id = :message_id"
    )
    DUE_DELAYS = (
        "SELECT d.message_id, d.deliver_at, d.mode, d.status FROM delay_timers d "
        "JOIN messages m ON m.id = d.message_id WHERE d.status = 'pending' "
        "AND m.status = 'held' AND d.deliver_at <= :now ORDER BY d.deliver_at LIMIT :limit"
    )
    #: What a purge of old messages removes with them (``:cutoff``), before the messages.
    PURGE = (
        "DELETE FROM request_approvals WHERE request_id IN (SELECT r.id FROM release_requests r "
        "JOIN messages m ON m.id = r.message_id WHERE m.received_at < :cutoff)",
        "DELETE FROM release_requests WHERE message_id IN "
        "(SELECT id FROM messages WHERE received_at < :cutoff)",
        "DELETE FROM delay_timers WHERE message_id IN "
        "(SELECT id FROM messages WHERE received_at < :cutoff)",
        "DELETE FROM used_tokens WHERE message_id IN "
        "(SELECT id FROM messages WHERE received_at < :cutoff)",
    )
    FINISH_DELAY = (
        "UPDATE delay_timers SET status = :status "
        "WHERE message_id = :message_id AND status = 'pending'"
    )


_NAMED = re.compile(r"(?<!:):([a-z_]+)")


def pg_sql(statement: str) -> str:
    """``statement`` with ``:name`` parameters written as psycopg's ``%(name)s``."""
    return _NAMED.sub(r"%(\1)s", statement)


def list_requests_sql(status: str | None, message_id: str | None) -> str:
    """The listing statement with its optional filters, newest first, ``:limit`` rows."""
    where = []
    if status is not None:
        where.append("status = :status")
    if message_id is not None:
        where.append("message_id = :message_id")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    return f"{SQL.LIST_REQUESTS}{clause} ORDER BY created_at DESC, id LIMIT :limit"


def check_approval(request: ReleaseRequest, reviewer: str) -> None:
    """Raise FourEyesError when ``reviewer`` may not approve ``request``."""
    if reviewer == request.requester:
        raise FourEyesError(
            request.id, reviewer, "you made this request; another reviewer must approve it"
        )
    if reviewer in request.approvers:
        raise FourEyesError(
            request.id, reviewer,
            "you approved it already; its rule needs a second, different reviewer",
        )  # fmt: skip


def request_from_row(row: Mapping[str, Any], approvals: tuple[Approval, ...]) -> ReleaseRequest:
    """A :class:`ReleaseRequest` from its row (a mapping by column name) and approvals."""
    return ReleaseRequest(
        id=row["id"], message_id=row["message_id"], requester=row["requester"],
        justification=row["justification"], created_at=float(row["created_at"]),
        status=row["status"], approvals_needed=int(row["approvals_needed"]),
        decided_at=row["decided_at"], decided_by=row["decided_by"], comment=row["comment"],
        approvals=approvals,
    )  # fmt: skip
