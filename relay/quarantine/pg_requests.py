"""Sender self-service on PostgreSQL: release requests, approvals, undo-hold timers
and used tokens (the methods of :class:`~relay.quarantine.pg.PgStore` for them).

The same statements as SQLite (:mod:`relay.quarantine.requests`).  A decision
locks the request's row (``SELECT ... FOR UPDATE``) before it counts the
approvals, so two reviewers approving at the same moment on two instances are
serialised and a request needing two approvals is decided exactly once.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from relay.errors import (
    QuarantineNotFound,
    QuarantineStateError,
    RequestNotFound,
    RequestStateError,
)
from relay.quarantine.pg_sql import Conn
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
    pg_sql,
    request_from_row,
)
from relay.quarantine.store import HELD

__all__ = ["PgRequestMethods"]

T = TypeVar("T")


async def _one(conn: Conn, sql: str, params: dict[str, Any]) -> dict[str, Any] | None:
    cur = await conn.execute(pg_sql(sql), params)
    row = await cur.fetchone()
    return None if row is None else dict(row)


async def _rowcount(conn: Conn, sql: str, params: dict[str, Any]) -> int:
    cur = await conn.execute(pg_sql(sql), params)
    return int(cur.rowcount)


async def _request(conn: Conn, request_id: str, *, lock: bool = False) -> ReleaseRequest | None:
    row = await _one(conn, SQL.GET_REQUEST + (" FOR UPDATE" if lock else ""), {"id": request_id})
    if row is None:
        return None
    cur = await conn.execute(pg_sql(SQL.APPROVALS), {"id": request_id})
    approvals = tuple(
        Approval(r["reviewer"], float(r["at"]), r["comment"]) for r in await cur.fetchall()
    )
    return request_from_row(row, approvals)


async def _add_request(conn: Conn, params: dict[str, Any], message_id: str) -> ReleaseRequest:
    row = await _one(conn, SQL.MESSAGE_STATUS + " FOR UPDATE", {"message_id": message_id})
    if row is None:
        raise QuarantineNotFound(message_id)
    if row["status"] != HELD:
        raise QuarantineStateError(message_id, row["status"], "request release of")
    if await _rowcount(conn, SQL.INSERT_REQUEST, params) != 1:
        raise RequestStateError(str(params["id"]), "already pending for this message", "make")
    found = await _request(conn, str(params["id"]))
    assert found is not None
    return found


async def _still_held(conn: Conn, message_id: str) -> None:
    """An approval only counts while the message waits (see the SQLite backend)."""
    row = await _one(conn, SQL.MESSAGE_STATUS + " FOR UPDATE", {"message_id": message_id})
    if row is None:
        raise QuarantineNotFound(message_id)
    if row["status"] != HELD:
        raise QuarantineStateError(message_id, row["status"], "approve a request for")


async def _decide(
    conn: Conn, request_id: str, reviewer: str, comment: str, now: float, approve: bool
) -> ReleaseRequest:
    request = await _request(conn, request_id, lock=True)
    if request is None:
        raise RequestNotFound(request_id)
    if request.status != PENDING:
        raise RequestStateError(request_id, request.status, "approve" if approve else "deny")
    params = {"id": request_id, "reviewer": reviewer, "comment": comment, "now": now}
    if approve:
        check_approval(request, reviewer)
        await _still_held(conn, request.message_id)
        await conn.execute(pg_sql(SQL.ADD_APPROVAL), params)
        if len(request.approvals) + 1 >= request.approvals_needed:
            await conn.execute(pg_sql(SQL.DECIDE), {**params, "status": APPROVED})
    else:
        await conn.execute(pg_sql(SQL.DECIDE), {**params, "status": DENIED})
    decided = await _request(conn, request_id)
    assert decided is not None
    return decided


def _timer(row: dict[str, Any]) -> DelayTimer:
    return DelayTimer(row["message_id"], float(row["deliver_at"]), row["mode"], row["status"])


class PgRequestMethods:
    """Release requests, approvals, undo-hold timers and used tokens on PostgreSQL."""

    _clock: Callable[[], float]

    if TYPE_CHECKING:

        async def _call(self, what: str, fn: Callable[[Conn], Awaitable[T]]) -> T: ...

        async def _in_transaction(self, what: str, fn: Callable[[Conn], Awaitable[T]]) -> T: ...

    async def use_token(self, token_id: str, message_id: str, action: str) -> bool:
        """Record a self-service token as used; False if it was used before."""
        params: dict[str, Any] = {
            "token_id": token_id, "message_id": message_id, "action": action, "now": self._clock(),
        }  # fmt: skip
        count = await self._in_transaction(
            "token write", lambda c: _rowcount(c, SQL.USE_TOKEN, params)
        )
        return count == 1

    async def token_used(self, token_id: str) -> str | None:
        """What a used token did (its action), or None if it was never used."""
        row = await self._call(
            "token read", lambda c: _one(c, SQL.TOKEN_USED, {"token_id": token_id})
        )
        return None if row is None else str(row["action"])

    async def add_request(
        self, message_id: str, requester: str, justification: str, approvals_needed: int = 1
    ) -> ReleaseRequest:
        """A new pending release request for a held message (one pending per message)."""
        params: dict[str, Any] = {
            "id": new_request_id(), "message_id": message_id, "requester": requester,
            "justification": justification, "now": self._clock(), "needed": approvals_needed,
        }  # fmt: skip
        return await self._in_transaction(
            "request write", lambda c: _add_request(c, params, message_id)
        )

    async def get_request(self, request_id: str) -> ReleaseRequest | None:
        """The request with its approvals, or None."""
        return await self._in_transaction("request read", lambda c: _request(c, request_id))

    async def list_requests(
        self, *, status: str | None = None, message_id: str | None = None, limit: int = 100
    ) -> builtins.list[ReleaseRequest]:
        """Requests newest first, optionally by status and message."""
        sql = pg_sql(list_requests_sql(status, message_id))
        params = {"status": status, "message_id": message_id, "limit": limit}

        async def run(conn: Conn) -> builtins.list[ReleaseRequest]:
            cur = await conn.execute(sql, params)
            ids = [r["id"] for r in await cur.fetchall()]
            found = [await _request(conn, i) for i in ids]
            return [r for r in found if r is not None]

        return await self._in_transaction("request list", run)

    async def approve_request(
        self, request_id: str, reviewer: str, comment: str = ""
    ) -> ReleaseRequest:
        """Add ``reviewer``'s approval (four-eyes checks under the row lock); the
        request becomes ``approved`` once it has as many as it needs."""
        now = self._clock()
        return await self._in_transaction(
            "request approve", lambda c: _decide(c, request_id, reviewer, comment, now, True)
        )

    async def deny_request(
        self, request_id: str, reviewer: str, comment: str = ""
    ) -> ReleaseRequest:
        """pending → denied by ``reviewer``."""
        now = self._clock()
        return await self._in_transaction(
            "request deny", lambda c: _decide(c, request_id, reviewer, comment, now, False)
        )

    async def set_delay(self, message_id: str, deliver_at: float, mode: str) -> None:
        """Start (or restart) the undo-hold timer of a held message."""
        params = {"message_id": message_id, "deliver_at": deliver_at, "mode": mode}
        await self._in_transaction("delay write", lambda c: _rowcount(c, SQL.SET_DELAY, params))

    async def get_delay(self, message_id: str) -> DelayTimer | None:
        """The message's undo-hold timer, or None."""
        row = await self._call(
            "delay read", lambda c: _one(c, SQL.GET_DELAY, {"message_id": message_id})
        )
        return None if row is None else _timer(row)

    async def due_delays(self, limit: int = 50) -> builtins.list[DelayTimer]:
        """Pending timers of still-held messages whose time has come (store clock)."""
        params = {"now": self._clock(), "limit": limit}

        async def run(conn: Conn) -> builtins.list[DelayTimer]:
            cur = await conn.execute(pg_sql(SQL.DUE_DELAYS), params)
            return [_timer(dict(r)) for r in await cur.fetchall()]

        return await self._call("delay list", run)

    async def finish_delay(self, message_id: str, status: str) -> bool:
        """pending → ``status`` (done / cancelled); False if it was not pending."""
        params = {"message_id": message_id, "status": status}
        count = await self._in_transaction(
            "delay write", lambda c: _rowcount(c, SQL.FINISH_DELAY, params)
        )
        return count == 1
