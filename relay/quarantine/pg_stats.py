"""The overview's read of the PostgreSQL store (:class:`PgStatsMethods`, mixed into PgStore)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from relay.errors import StoreError
from relay.quarantine.pg_sql import Conn
from relay.quarantine.stats import MAX_PERIOD_ROWS, PeriodRow, period_query, row_from_mapping

__all__ = ["PgStatsMethods", "period_rows"]

T = TypeVar("T")
_QUERY = period_query("%s")


async def period_rows(conn: Conn, start: float, end: float) -> list[PeriodRow]:
    """Messages received, released or deleted in ``[start, end)``, oldest first."""
    cur = await conn.execute(_QUERY, (start, end) * 3)
    rows = await cur.fetchall()
    if len(rows) > MAX_PERIOD_ROWS:
        raise StoreError(f"more than {MAX_PERIOD_ROWS} messages in one period: shorten it")
    return [row_from_mapping(r) for r in rows]


class PgStatsMethods:
    """``period_rows`` of :class:`relay.quarantine.pg.PgStore`."""

    if TYPE_CHECKING:

        async def _call(self, what: str, fn: Callable[[Conn], Awaitable[T]]) -> T: ...

    async def period_rows(self, start: float, end: float) -> list[PeriodRow]:
        """Messages received, released or deleted in ``[start, end)`` (epoch seconds)."""
        if end < start:
            raise ValueError("the period ends before it starts")
        return await self._call("period read", lambda conn: period_rows(conn, start, end))
