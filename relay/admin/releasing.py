"""Release progress per recipient, and the report of a release, for web, API and CLI.

A release records every recipient it is done with in the store's ledger
under ``release:<message id>``: the recipient itself once the upstream
accepted the message for them, ``refused:<recipient>`` once the upstream
refused them for good.  A later release delivers only to the others, so
nobody gets a released message twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from relay.codes import Reply
from relay.quarantine.store import StoredMessage

__all__ = [
    "REFUSED_PREFIX",
    "ReleaseDeferred",
    "ReleaseProgress",
    "ReleaseReport",
    "reply_codes",
]

REFUSED_PREFIX = "refused:"


@dataclass(frozen=True, slots=True)
class ReleaseProgress:
    """From the ledger: who already has the message, who refused it for good."""

    delivered: frozenset[str] = frozenset()
    refused: frozenset[str] = frozenset()

    @classmethod
    def from_ledger(cls, done: Iterable[str]) -> ReleaseProgress:
        """Parse the ledger's copy ids for one message."""
        delivered, refused = set(), set()
        for copy_id in done:
            if copy_id.startswith(REFUSED_PREFIX):
                refused.add(copy_id[len(REFUSED_PREFIX) :])
            else:
                delivered.add(copy_id)
        return cls(frozenset(delivered), frozenset(refused))

    def pending(self, rcpts: Iterable[str]) -> tuple[str, ...]:
        """The recipients still to deliver to, in envelope order, once each."""
        done = self.delivered | self.refused
        return tuple(r for r in dict.fromkeys(rcpts) if r not in done)


def reply_codes(replies: Iterable[Reply | None]) -> str:
    """The distinct ``code status`` of some replies, e.g. ``451 4.2.0,550 5.1.1``."""
    codes = {f"{r.code} {r.status}".strip() for r in replies if r is not None}
    return ",".join(sorted(codes)) or "-"


@dataclass(frozen=True, slots=True)
class ReleaseReport:
    """How a release went, over every attempt so far.

    ``delivered`` counts the recipients who have the message; ``deferred``
    maps recipients the upstream refused for now (this attempt) to its reply;
    ``refused`` maps recipients it refused for good to its reply (None when
    that happened in an earlier attempt).  ``reply`` is the answer to this
    attempt's DATA (None if nothing was sent).
    """

    message: StoredMessage
    mode: str
    reply: Reply | None
    delivered: int
    total: int
    deferred: Mapping[str, Reply] = field(default_factory=dict)
    refused: Mapping[str, Reply | None] = field(default_factory=dict)

    def audit_detail(self) -> str:
        """For the audit log and the log line: counts and reply codes, no addresses."""
        reply = f"{self.reply.code} {self.reply.status}".strip() if self.reply else "-"
        parts = [f"mode={self.mode}", f"reply={reply}", f"delivered={self.delivered}/{self.total}"]
        if self.deferred:
            parts.append(f"deferred={len(self.deferred)} ({reply_codes(self.deferred.values())})")
        if self.refused:
            parts.append(f"refused={len(self.refused)} ({reply_codes(self.refused.values())})")
        return " ".join(parts)

    def still_held_text(self) -> str:
        """What to tell the admin when deferred recipients keep the message held."""
        text = f"still held: {len(self.deferred)} recipient(s) deferred"
        if self.refused:
            text += f", {len(self.refused)} refused for good"
        if self.delivered:
            text += ", the others were delivered"
        return text + "; release again to retry them"

    def refused_text(self) -> str:
        """What to tell the admin about recipients who will never get it ("" if none)."""
        if not self.refused:
            return ""
        return (
            f"{len(self.refused)} recipient(s) were refused for good by the upstream "
            "and did not get the message"
        )


class ReleaseDeferred(Exception):
    """Some recipients were deferred: the message stays held; the others have it."""

    def __init__(self, report: ReleaseReport) -> None:
        super().__init__(report.still_held_text())
        self.report = report
