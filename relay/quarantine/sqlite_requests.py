"""Sender self-service in the SQLite backend: release requests, approvals, undo-hold
timers and used tokens (the methods of :class:`~relay.quarantine.sqlite.SqliteStore`
for them, here so that sqlite.py stays small).

Every decision is checked and written in one ``BEGIN IMMEDIATE`` transaction:
two reviewers (or two instances) approving at once are serialised, so a
request needing two approvals is decided exactly once.
"""

from __future__ import annotations

import builtins
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from relay.errors import (
    QuarantineNotFound,
    QuarantineStateError,
    RequestNotFound,
    RequestStateError,
)
from relay.quarantine.requests import (
    APPROVED,
    DENIED,
    PENDING,
    SQL,
    Approval,
    DelayTimer,
    ReleaseRequest,
    check_approval,
    list_requests_sql,
    new_request_id,
    request_from_row,
)
from relay.quarantine.sqlite_tx import write_transaction
from relay.quarantine.store import HELD

__all__ = ["SqliteRequestMethods"]

T = TypeVar("T")


def _request(conn: sqlite3.Connection, request_id: str) -> ReleaseRequest | None:
    row = conn.execute(SQL.GET_REQUEST, {"id": request_id}).fetchone()
    if row is None:
        return None
    approvals = tuple(
        Approval(r["reviewer"], float(r["at"]), r["comment"])
        for r in conn.execute(SQL.APPROVALS, {"id": request_id})
    )
    return request_from_row(dict(row), approvals)


def _pending(conn: sqlite3.Connection, request_id: str, wanted: str) -> ReleaseRequest:
    request = _request(conn, request_id)
    if request is None:
        raise RequestNotFound(request_id)
    if request.status != PENDING:
        raise RequestStateError(request_id, request.status, wanted)
    return request


def _add_request(
    conn: sqlite3.Connection, params: dict[str, object], message_id: str
) -> ReleaseRequest:
    with write_transaction(conn):
        row = conn.execute(SQL.MESSAGE_STATUS, {"message_id": message_id}).fetchone()
        if row is None:
            raise QuarantineNotFound(message_id)
        if row["status"] != HELD:
            raise QuarantineStateError(message_id, row["status"], "request release of")
        if conn.execute(SQL.INSERT_REQUEST, params).rowcount != 1:
            raise RequestStateError(str(params["id"]), "already pending for this message", "make")
    found = _request(conn, str(params["id"]))
    assert found is not None
    return found


def _still_held(conn: sqlite3.Connection, message_id: str) -> None:
    """An approval only counts while the message waits: released or deleted another
    way meanwhile, nothing could go as written."""
    row = conn.execute(SQL.MESSAGE_STATUS, {"message_id": message_id}).fetchone()
    if row is None:
        raise QuarantineNotFound(message_id)
    if row["status"] != HELD:
        raise QuarantineStateError(message_id, row["status"], "approve a request for")


def _decide(
    conn: sqlite3.Connection,
    request_id: str,
    reviewer: str,
    comment: str,
    now: float,
    approve: bool,
) -> ReleaseRequest:
    with write_transaction(conn):
        request = _pending(conn, request_id, "approve" if approve else "deny")
        params = {"id": request_id, "reviewer": reviewer, "comment": comment, "now": now}
        if approve:
            check_approval(request, reviewer)
            _still_held(conn, request.message_id)
            conn.execute(SQL.ADD_APPROVAL, params)
            if len(request.approvals) + 1 >= request.approvals_needed:
                conn.execute(SQL.DECIDE, {**params, "status": APPROVED})
        else:
            conn.execute(SQL.DECIDE, {**params, "status": DENIED})
    decided = _request(conn, request_id)
    assert decided is not None
    return decided


def _timer(row: sqlite3.Row) -> DelayTimer:
    return DelayTimer(row["message_id"], float(row["deliver_at"]), row["mode"], row["status"])


class SqliteRequestMethods:
    """Release requests, approvals, undo-hold timers and used tokens on SQLite."""

    _clock: Callable[[], float]

    if TYPE_CHECKING:

        async def _call(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    def _write(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> Awaitable[T]:
        def run(conn: sqlite3.Connection) -> T:
            with write_transaction(conn):
                return fn(conn)

        return self._call(what, run)

    async def use_token(self, token_id: str, message_id: str, action: str) -> bool:
        """Record a self-service token as used; False if it was used before."""
        params: dict[str, object] = {
            "token_id": token_id, "message_id": message_id, "action": action, "now": self._clock(),
        }  # fmt: skip
        return await self._write(
            "token write", lambda conn: conn.execute(SQL.USE_TOKEN, params).rowcount == 1
        )

    async def token_used(self, token_id: str) -> str | None:
        """What a used token did (its action), or None if it was never used."""

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(SQL.TOKEN_USED, {"token_id": token_id}).fetchone()
            return None if row is None else str(row[0])

        return await self._call("token read", run)

    async def add_request(
        self, message_id: str, requester: str, justification: str, approvals_needed: int = 1
    ) -> ReleaseRequest:
        """A new pending release request for a held message (one pending per message)."""
        params: dict[str, object] = {
            "id": new_request_id(), "message_id": message_id, "requester": requester,
            "justification": justification, "now": self._clock(), "needed": approvals_needed,
        }  # fmt: skip
        return await self._call("request write", lambda c: _add_request(c, params, message_id))

    async def get_request(self, request_id: str) -> ReleaseRequest | None:
        """The request with its approvals, or None."""
        return await self._call("request read", lambda conn: _request(conn, request_id))

    async def list_requests(
        self, *, status: str | None = None, message_id: str | None = None, limit: int = 100
    ) -> builtins.list[ReleaseRequest]:
        """Requests newest first, optionally by status and message."""
        sql = list_requests_sql(status, message_id)
        params = {"status": status, "message_id": message_id, "limit": limit}

        def run(conn: sqlite3.Connection) -> builtins.list[ReleaseRequest]:
            ids = [r["id"] for r in conn.execute(sql, params)]
            return [r for r in (_request(conn, i) for i in ids) if r is not None]

        return await self._call("request list", run)

    async def approve_request(
        self, request_id: str, reviewer: str, comment: str = ""
    ) -> ReleaseRequest:
        """Add ``reviewer``'s approval (four-eyes checks in the same transaction);
        the request becomes ``approved`` once it has as many as it needs."""
        now = self._clock()
        return await self._call(
            "request approve", lambda c: _decide(c, request_id, reviewer, comment, now, True)
        )

    async def deny_request(
        self, request_id: str, reviewer: str, comment: str = ""
    ) -> ReleaseRequest:
        """pending → denied by ``reviewer``."""
        now = self._clock()
        return await self._call(
            "request deny", lambda c: _decide(c, request_id, reviewer, comment, now, False)
        )

    async def set_delay(self, message_id: str, deliver_at: float, mode: str) -> None:
        """Start (or restart) the undo-hold timer of a held message."""
        params = {"message_id": message_id, "deliver_at": deliver_at, "mode": mode}
        await self._write("delay write", lambda conn: conn.execute(SQL.SET_DELAY, params))

    async def get_delay(self, message_id: str) -> DelayTimer | None:
        """The message's undo-hold timer, or None."""

        def run(conn: sqlite3.Connection) -> DelayTimer | None:
            row = conn.execute(SQL.GET_DELAY, {"message_id": message_id}).fetchone()
            return None if row is None else _timer(row)

        return await self._call("delay read", run)

    async def due_delays(self, limit: int = 50) -> builtins.list[DelayTimer]:
        """Pending timers of still-held messages whose time has come (store clock)."""
        params = {"now": self._clock(), "limit": limit}
        return await self._call(
            "delay list", lambda conn: [_timer(r) for r in conn.execute(SQL.DUE_DELAYS, params)]
        )

    async def finish_delay(self, message_id: str, status: str) -> bool:
        """pending → ``status`` (done / cancelled); False if it was not pending."""
        params = {"message_id": message_id, "status": status}
        return await self._write(
            "delay write", lambda conn: conn.execute(SQL.FINISH_DELAY, params).rowcount == 1
        )
