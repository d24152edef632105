"""Search queries over held messages and the audit log, shared by both backends.

A :class:`MessageQuery` / :class:`AuditQuery` says WHAT to find; the
backends (:mod:`relay.quarantine.sqlite_search`, :mod:`relay.quarantine.pg_search`)
turn it into SQL with :func:`message_where` / :func:`audit_where` and their
:class:`Dialect`.  Every value is a bound parameter, never text in the statement.

Matching rules (the same on SQLite and PostgreSQL):

- ``sender``: with ``*`` or ``?`` a pattern over the whole envelope sender
  (``*@example.org``, ``alice*``), else a substring (``alice``); case-insensitive.
- ``subject``: a case-insensitive substring of the decoded Subject.
- ``rcpt_domain``: some envelope recipient is at exactly that domain; ``*.example.com``
  also matches its subdomains (and ``example.com`` itself).
- ``sender_address``: exactly that envelope sender, case-insensitively (what the API's
  and CLI's ``sender`` meant before the web search, kept for a full address).
- ``rule``: the rule's exact name.  ``since`` / ``until``: ``received_at`` in [since, until).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from relay.quarantine.store import STATUSES, AuditEntry

__all__ = [
    "AuditPage",
    "AuditQuery",
    "Dialect",
    "MessageQuery",
    "audit_where",
    "like_pattern",
    "message_where",
]


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """Which messages to find (``None``: any); see the module docstring for matching."""

    status: str | None = None
    sender: str | None = None
    subject: str | None = None
    rcpt_domain: str | None = None
    rule: str | None = None
    since: float | None = None
    until: float | None = None
    sender_address: str | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {self.status!r}")

    def active(self) -> tuple[str, ...]:
        """The names of the filters that are set, ``status`` excepted."""
        return tuple(
            f.name for f in fields(self) if f.name != "status" and getattr(self, f.name) is not None
        )


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which audit entries to find: exact ``actor``, ``action``, ``target``; ``at`` in
    [since, until)."""

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of audit entries, newest first; ``total`` counts every match."""

    items: tuple[AuditEntry, ...]
    total: int
    limit: int
    offset: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.items) < self.total


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one backend spells the parts of a search.

    ``contains`` and ``lower`` are templates with ``{col}`` and ``{mark}``;
    ``rcpt_values`` is a table expression of the recipients with one column ``value``.
    """

    mark: str
    contains: str
    lower: str
    rcpt_values: str


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_pattern(glob: str) -> str:
    """A LIKE pattern (escape character ``\\``) for a glob with ``*`` and ``?``."""
    return _escape_like(glob).replace("*", "%").replace("?", "_")


def _lowered(text: str | None) -> str | None:
    return None if text is None else text.strip().lower()


def _sender_clause(sender: str, d: Dialect) -> tuple[str, list[Any]]:
    if "*" in sender or "?" in sender:
        return f"sender_key LIKE {d.mark} ESCAPE '\\'", [like_pattern(sender)]
    return d.contains.format(col="sender_key", mark=d.mark), [sender]


def _domain_clause(domain: str, d: Dialect) -> tuple[str, list[Any]]:
    value = d.lower.format(col="value")
    test = f"{value} LIKE {d.mark} ESCAPE '\\'"
    params: list[Any] = []
    if domain.startswith("*."):
        domain = domain[2:]
        test = f"({test} OR {value} LIKE {d.mark} ESCAPE '\\')"
        params.append("%@%." + _escape_like(domain))
    params.insert(0, "%@" + _escape_like(domain))
    return f"EXISTS (SELECT 1 FROM {d.rcpt_values} WHERE {test})", params


def message_where(q: MessageQuery, d: Dialect) -> tuple[str, tuple[Any, ...]]:
    """The ``WHERE`` clause (leading space, or "") of ``q`` and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []

    def add(clause: str, values: list[Any]) -> None:
        clauses.append(clause)
        params.extend(values)

    if q.status is not None:
        add(f"status = {d.mark}", [q.status])
    if sender := _lowered(q.sender):
        add(*_sender_clause(sender, d))
    if address := _lowered(q.sender_address):
        add(f"sender_key = {d.mark}", [address])
    if subject := _lowered(q.subject):
        add(d.contains.format(col=d.lower.format(col="subject"), mark=d.mark), [subject])
    if domain := _lowered(q.rcpt_domain):
        add(*_domain_clause(domain.lstrip("@"), d))
    if q.rule is not None:
        add(f"rule = {d.mark}", [q.rule])
    if q.since is not None:
        add(f"received_at >= {d.mark}", [q.since])
    if q.until is not None:
        add(f"received_at < {d.mark}", [q.until])
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def audit_where(q: AuditQuery, d: Dialect) -> tuple[str, tuple[Any, ...]]:
    """The ``WHERE`` clause (leading space, or "") of ``q`` and its parameters."""
    pairs = (
        ("actor = ", q.actor),
        ("action = ", q.action),
        ("target = ", q.target),
        ("at >= ", q.since),
        ("at < ", q.until),
    )
    used = [(column, value) for column, value in pairs if value is not None]
    clauses = [f"{column}{d.mark}" for column, _ in used]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(v for _, v in used)
