"""What the overview and the evidence report read from the store: one row per message.

Both backends answer :meth:`QuarantineStore.period_rows` with the same SQL
(only the placeholder differs) over the existing ``messages`` table: the
schema is not changed for the overview.  A row carries counts and decision
stamps only, never the message bytes, its recipients or its subject.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_PERIOD_ROWS", "PERIOD_COLUMNS", "PeriodRow", "period_query", "row_from_mapping"]

MAX_PERIOD_ROWS = 500_000
"""At most this many rows are read for one period (a bound on memory, far above a
year of held mail at any organisation we know of); more raises StoreError."""

PERIOD_COLUMNS = (
    "id, received_at, status, sender_key, rule, action, exposure, "
    "released_at, released_by, release_mode, deleted_at, deleted_by"
)


def period_query(mark: str) -> str:
    """The SELECT for messages received OR decided in ``[start, end)``; ``mark`` is
    the driver's placeholder (``?`` or ``%s``); parameters: start, end three times."""
    window = f">= {mark} AND {{col}} < {mark}"
    cond = " OR ".join(f"({col} {window.format(col=col)})" for col in _STAMPS)
    return (
        f"SELECT {PERIOD_COLUMNS} FROM messages WHERE {cond} "
        f"ORDER BY received_at, id LIMIT {MAX_PERIOD_ROWS + 1}"
    )


_STAMPS = ("received_at", "released_at", "deleted_at")


@dataclass(frozen=True, slots=True)
class PeriodRow:
    """One message as the overview sees it: when, which rule, how many addresses, what became of it.

    ``sender`` is the lower-cased envelope sender (the report hashes it);
    ``visible_external`` / ``external_domains`` / ``visible_total`` come from the
    stored exposure counts.
    """

    id: str
    received_at: float
    status: str
    sender: str
    rule: str | None
    action: str
    visible_external: int
    external_domains: int
    visible_total: int
    released_at: float | None
    released_by: str | None
    release_mode: str | None
    deleted_at: float | None
    deleted_by: str | None

    @property
    def decided_at(self) -> float | None:
        """When a reviewer released or deleted it (None while held)."""
        return self.released_at if self.released_at is not None else self.deleted_at

    @property
    def decided_by(self) -> str | None:
        """Who released or deleted it."""
        return self.released_by if self.released_by is not None else self.deleted_by


def _count(exposure: Mapping[str, Any], key: str) -> int:
    value = exposure.get(key, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def row_from_mapping(row: Mapping[str, Any]) -> PeriodRow:
    """A :class:`PeriodRow` from a database row (sqlite3.Row or a psycopg dict row)."""
    try:
        exposure = json.loads(row["exposure"])
    except (TypeError, ValueError):
        exposure = {}
    if not isinstance(exposure, dict):
        exposure = {}
    return PeriodRow(
        id=row["id"],
        received_at=float(row["received_at"]),
        status=row["status"],
        sender=row["sender_key"],
        rule=row["rule"],
        action=row["action"],
        visible_external=_count(exposure, "visible_external"),
        external_domains=_count(exposure, "external_domains"),
        visible_total=_count(exposure, "visible_total"),
        released_at=row["released_at"],
        released_by=row["released_by"],
        release_mode=row["release_mode"],
        deleted_at=row["deleted_at"],
        deleted_by=row["deleted_by"],
    )
