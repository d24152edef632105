"""The overview's read of the SQLite store (:class:`SqliteStatsMethods`, mixed into SqliteStore)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from relay.errors import StoreError
from relay.quarantine.stats import MAX_PERIOD_ROWS, PeriodRow, period_query, row_from_mapping

__all__ = ["SqliteStatsMethods", "period_rows"]

T = TypeVar("T")
_QUERY = period_query("?")


def period_rows(conn: sqlite3.Connection, start: float, end: float) -> list[PeriodRow]:
    """Messages received, released or deleted in ``[start, end)``, oldest first."""
    rows = conn.execute(_QUERY, (start, end) * 3).fetchall()
    if len(rows) > MAX_PERIOD_ROWS:
        raise StoreError(f"more than {MAX_PERIOD_ROWS} messages in one period: shorten it")
    return [row_from_mapping(r) for r in rows]


class SqliteStatsMethods:
    """``period_rows`` of :class:`relay.quarantine.sqlite.SqliteStore`."""

    if TYPE_CHECKING:

        async def _call(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def period_rows(self, start: float, end: float) -> list[PeriodRow]:
        """Messages received, released or deleted in ``[start, end)`` (epoch seconds)."""
        if end < start:
            raise ValueError("the period ends before it starts")
        return await self._call("period read", lambda conn: period_rows(conn, start, end))
