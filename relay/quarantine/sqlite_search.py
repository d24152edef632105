"""Search over held messages and the audit log on SQLite (a mixin of SqliteStore).

The recipients are the JSON array in ``messages.rcpt_tos``, read with
``json_each``; ``lower()`` is Python's (registered on the connection), because
SQLite's own folds ASCII letters only and subjects are often not ASCII.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from relay.quarantine.search import (
    AuditPage,
    AuditQuery,
    Dialect,
    MessageQuery,
    audit_where,
    message_where,
)
from relay.quarantine.sqlite_sql import SUMMARY_COLUMNS, row_to_summary
from relay.quarantine.store import AuditEntry, Page

__all__ = ["DIALECT", "SqliteSearchMethods", "search_audit", "search_messages"]

T = TypeVar("T")
_LOWER = "ccguard_lower"
DIALECT = Dialect(
    mark="?",
    contains="instr({col}, {mark}) > 0",
    lower=_LOWER + "({col})",
    rcpt_values="json_each(messages.rcpt_tos)",
)


def _lower(text: str | None) -> str | None:
    return text.lower() if isinstance(text, str) else None


def _check_page(limit: int, offset: int) -> None:
    if limit < 1 or offset < 0:
        raise ValueError("limit must be >= 1 and offset >= 0")


def search_messages(conn: sqlite3.Connection, query: MessageQuery, limit: int, offset: int) -> Page:
    """One page of the messages matching ``query``, newest first, and their total."""
    conn.create_function(_LOWER, 1, _lower, deterministic=True)
    where, params = message_where(query, DIALECT)
    total = conn.execute(f"SELECT count(*) FROM messages{where}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT {SUMMARY_COLUMNS} FROM messages{where} "
        "ORDER BY received_at DESC, rowid DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    items = tuple(row_to_summary(r) for r in rows)
    return Page(items=items, total=int(total), limit=limit, offset=offset)


def search_audit(conn: sqlite3.Connection, query: AuditQuery, limit: int, offset: int) -> AuditPage:
    """One page of the audit entries matching ``query``, newest first, and their total."""
    where, params = audit_where(query, DIALECT)
    total = conn.execute(f"SELECT count(*) FROM audit{where}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT id, at, actor, action, target, result, detail FROM audit{where} "
        "ORDER BY id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    items = tuple(AuditEntry(*r) for r in rows)
    return AuditPage(items=items, total=int(total), limit=limit, offset=offset)


class SqliteSearchMethods:
    """The search methods of :class:`~relay.quarantine.sqlite.SqliteStore` (it has ``_call``)."""

    if TYPE_CHECKING:

        async def _call(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def search(self, query: MessageQuery, *, limit: int = 50, offset: int = 0) -> Page:
        """Summaries of the messages matching ``query``, newest first, with the total."""
        _check_page(limit, offset)
        return await self._call("search", lambda c: search_messages(c, query, limit, offset))

    async def search_audit(
        self, query: AuditQuery, *, limit: int = 100, offset: int = 0
    ) -> AuditPage:
        """Audit entries matching ``query``, newest first, with their total."""
        _check_page(limit, offset)
        return await self._call("audit search", lambda c: search_audit(c, query, limit, offset))
