"""Search over held messages and the audit log on PostgreSQL (a mixin of PgStore).

The recipients are the JSON array text in ``messages.rcpt_tos``, read with
``json_array_elements_text``; count and page are read in one transaction (one
snapshot) so they agree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from relay.quarantine import pg_sql
from relay.quarantine.pg_sql import SUMMARY_COLUMNS, Conn
from relay.quarantine.search import (
    AuditPage,
    AuditQuery,
    Dialect,
    MessageQuery,
    audit_where,
    message_where,
)
from relay.quarantine.store import AuditEntry, Page

__all__ = ["DIALECT", "PgSearchMethods", "search_audit", "search_messages"]

T = TypeVar("T")
DIALECT = Dialect(
    mark="%s",
    contains="strpos({col}, {mark}) > 0",
    lower="lower({col})",
    rcpt_values="json_array_elements_text(messages.rcpt_tos::json) AS r(value)",
)


def _check_page(limit: int, offset: int) -> None:
    if limit < 1 or offset < 0:
        raise ValueError("limit must be >= 1 and offset >= 0")


async def search_messages(conn: Conn, query: MessageQuery, limit: int, offset: int) -> Page:
    """One page of the messages matching ``query``, newest first, and their total."""
    where, params = message_where(query, DIALECT)
    cur = await conn.execute(f"SELECT count(*) AS n FROM messages{where}", params)
    total = (await cur.fetchone() or {"n": 0})["n"]
    cur = await conn.execute(
        f"SELECT {SUMMARY_COLUMNS} FROM messages{where} "
        "ORDER BY received_at DESC, seq DESC LIMIT %s OFFSET %s",
        (*params, limit, offset),
    )
    items = tuple(pg_sql.row_to_summary(r) for r in await cur.fetchall())
    return Page(items=items, total=int(total), limit=limit, offset=offset)


async def search_audit(conn: Conn, query: AuditQuery, limit: int, offset: int) -> AuditPage:
    """One page of the audit entries matching ``query``, newest first, and their total."""
    where, params = audit_where(query, DIALECT)
    cur = await conn.execute(f"SELECT count(*) AS n FROM audit{where}", params)
    total = (await cur.fetchone() or {"n": 0})["n"]
    cur = await conn.execute(
        f"SELECT id, at, actor, action, target, result, detail FROM audit{where} "
        "ORDER BY id DESC LIMIT %s OFFSET %s",
        (*params, limit, offset),
    )
    items = tuple(AuditEntry(**r) for r in await cur.fetchall())
    return AuditPage(items=items, total=int(total), limit=limit, offset=offset)


class PgSearchMethods:
    """The search methods of :class:`~relay.quarantine.pg.PgStore`; it provides the plumbing."""

    if TYPE_CHECKING:

        async def _in_transaction(self, what: str, fn: Callable[[Conn], Awaitable[T]]) -> T: ...

    async def search(self, query: MessageQuery, *, limit: int = 50, offset: int = 0) -> Page:
        """Summaries of the messages matching ``query``, newest first, with the total."""
        _check_page(limit, offset)
        return await self._in_transaction(
            "search", lambda c: search_messages(c, query, limit, offset)
        )

    async def search_audit(
        self, query: AuditQuery, *, limit: int = 100, offset: int = 0
    ) -> AuditPage:
        """Audit entries matching ``query``, newest first, with their total."""
        _check_page(limit, offset)
        return await self._in_transaction(
            "audit search", lambda c: search_audit(c, query, limit, offset)
        )
