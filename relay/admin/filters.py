"""Reading search filters from a query string (web page, API) or the command line.

Times: an age back from now (``7d``, ``12h``, ``90m``), an ISO date
(``2026-11-01``, midnight UTC; as an *until* date the whole day is included)
or an ISO date and time (``2026-11-01T08:00``, UTC unless it says otherwise).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

from relay.quarantine.search import AuditQuery, MessageQuery
from relay.quarantine.store import STATUSES

__all__ = [
    "MESSAGE_FIELDS",
    "audit_query",
    "describe_filter",
    "exact_sender",
    "message_query",
    "parse_age",
    "parse_time",
]

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([dhm])\s*$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60}
#: The message filters a query string may carry, in the order the page shows them.
MESSAGE_FIELDS = ("status", "sender", "subject", "rcpt_domain", "rule", "since", "until")
_FULL_ADDRESS = re.compile(r"^[^@\s*?]+@[^@\s*?]+$")
_LABELS = {
    "sender": "sender",
    "sender_address": "sender",
    "subject": "subject",
    "rcpt_domain": "recipient domain",
    "rule": "rule",
    "since": "received since",
    "until": "received until",
}


def parse_age(text: str) -> float:
    """``30d`` / ``12h`` / ``90m`` → seconds; raises ValueError otherwise."""
    match = _AGE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not an age like 30d, 12h or 90m")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_time(text: str, now: float, *, end: bool = False) -> float:
    """Epoch seconds for an age, a date or a date and time (see the module docstring);
    ``end``: a bare date means the end of that day.  Raises ValueError."""
    text = text.strip()
    if _AGE.match(text):
        return now - parse_age(text)
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return (start + timedelta(days=1 if end else 0)).timestamp()
        when = datetime.fromisoformat(text)
    except (ValueError, OverflowError):  # OverflowError: the day after 9999-12-31
        raise ValueError(
            f"{text!r} is not a time: use 7d / 12h / 90m, 2026-11-01 or 2026-11-01T08:00"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    return value or None


def _time(params: Mapping[str, str], name: str, now: float, end: bool) -> float | None:
    value = _text(params, name)
    if value is None:
        return None
    try:
        return parse_time(value, now, end=end)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def message_query(
    params: Mapping[str, str], now: float, default_status: str = "held"
) -> MessageQuery:
    """The :class:`MessageQuery` of a query string; ``status=all`` means any status.
    A full sender address means exactly that sender (:func:`exact_sender`), so a bulk
    decision for alice@example.org never takes malice@example.org's mail too.
    Raises ValueError naming the parameter that is wrong."""
    status = params.get("status", "").strip() or default_status
    if status not in (*STATUSES, "all"):
        raise ValueError(f"status must be one of {', '.join((*STATUSES, 'all'))}")
    query = MessageQuery(
        status=None if status == "all" else status,
        sender=_text(params, "sender"),
        subject=_text(params, "subject"),
        rcpt_domain=_text(params, "rcpt_domain"),
        rule=_text(params, "rule"),
        since=_time(params, "since", now, end=False),
        until=_time(params, "until", now, end=True),
    )
    return exact_sender(query)


def exact_sender(query: MessageQuery) -> MessageQuery:
    """``query`` with a ``sender`` that is a full address (``alice@example.org``, no
    ``*`` or ``?``) matching exactly that sender, as ``GET /api/quarantine`` and
    ``ccguard quarantine list`` always did; anything else stays a substring or pattern."""
    sender = (query.sender or "").strip()
    if not _FULL_ADDRESS.match(sender):
        return query
    return dataclasses.replace(query, sender=None, sender_address=sender)


def audit_query(params: Mapping[str, str], now: float) -> AuditQuery:
    """The :class:`AuditQuery` of a query string (``user``, ``action``, ``target``,
    ``since``, ``until``); raises ValueError naming the parameter that is wrong."""
    return AuditQuery(
        actor=_text(params, "user"),
        action=_text(params, "action"),
        target=_text(params, "target"),
        since=_time(params, "since", now, end=False),
        until=_time(params, "until", now, end=True),
    )


def describe_filter(name: str, params: Mapping[str, str]) -> str:
    """``subject "invoice"``: one filter as the page names it."""
    return f'{_LABELS.get(name, name)} "{params.get(name, "").strip()}"'
