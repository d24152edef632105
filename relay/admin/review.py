"""What an admin can do to a held message, with the audit trail; shared by web, API and CLI.

Every call writes one audit entry (``store.add_audit``) and one structured log
line with who, what, which message and the result.  Log lines and audit
details carry ids, modes and reply codes only, never a message's addresses.
"""

from __future__ import annotations

from typing import Any, Protocol

from relay.codes import Reply
from relay.errors import QuarantineNotFound, QuarantineStateError, UpstreamError
from relay.quarantine.store import (
    HELD,
    RELEASE_AS_IS,
    RELEASE_REWRITE,
    QuarantineStore,
    StoredMessage,
)

__all__ = [
    "MODE_AS_IS",
    "MODE_HIDDEN",
    "PUBLIC_MODES",
    "EventLog",
    "Releaser",
    "Review",
    "store_mode",
]

MODE_AS_IS = "as-is"
MODE_HIDDEN = "hidden"
PUBLIC_MODES: tuple[str, ...] = (MODE_AS_IS, MODE_HIDDEN)
_STORE_MODES = {MODE_AS_IS: RELEASE_AS_IS, MODE_HIDDEN: RELEASE_REWRITE}


def store_mode(mode: str) -> str:
    """The store's release-mode constant for a public mode (``as-is`` / ``hidden``)."""
    return _STORE_MODES[mode]


class Releaser(Protocol):
    """Delivers a held message upstream (``relay.actions.release.QuarantineReleaser``)."""

    async def release(self, stored: StoredMessage, mode: str) -> Reply:
        """Deliver ``stored`` (``mode`` is ``as-is`` or ``hidden``); raise UpstreamError if not."""
        ...


class EventLog(Protocol):
    """The structured logger (a structlog bound logger)."""

    def info(self, event: str, **kw: Any) -> Any:
        """Write one event."""
        ...


class Review:
    """Audited view / release / delete / purge of quarantined messages."""

    def __init__(self, store: QuarantineStore, releaser: Releaser | None, log: EventLog) -> None:
        self.store = store
        self.releaser = releaser
        self.log = log
        self._busy: set[str] = set()

    async def audit(
        self, actor: str, action: str, target: str, result: str, detail: str = ""
    ) -> None:
        """Write the audit entry and the matching log line."""
        self.log.info(
            "admin_action", actor=actor, action=action, target=target, result=result, detail=detail
        )
        await self.store.add_audit(actor, action, target, result, detail)

    async def view(self, message_id: str, actor: str) -> StoredMessage:
        """The message with its body; viewing it is audited."""
        stored = await self.store.get(message_id)
        if stored is None:
            await self.audit(actor, "view", message_id, "not_found")
            raise QuarantineNotFound(message_id)
        await self.audit(actor, "view", message_id, "ok")
        return stored

    async def _held(self, message_id: str, actor: str, action: str) -> StoredMessage:
        stored = await self.store.get(message_id)
        if stored is None:
            await self.audit(actor, action, message_id, "not_found")
            raise QuarantineNotFound(message_id)
        if stored.status != HELD or message_id in self._busy:
            status = stored.status if stored.status != HELD else "being released"
            await self.audit(actor, action, message_id, "conflict", f"status={status}")
            raise QuarantineStateError(message_id, status, action)
        return stored

    async def release(self, message_id: str, mode: str, actor: str) -> tuple[StoredMessage, Reply]:
        """Deliver upstream, then mark released; on UpstreamError it stays held (re-raised).

        Returns the updated message and the upstream's reply.
        """
        if mode not in PUBLIC_MODES:
            raise ValueError(f"mode must be one of {', '.join(PUBLIC_MODES)}")
        if self.releaser is None:
            raise RuntimeError("no releaser configured")
        stored = await self._held(message_id, actor, "release")
        self._busy.add(message_id)
        try:
            try:
                reply = await self.releaser.release(stored, mode)
            except UpstreamError as exc:
                detail = f"mode={mode} kind={exc.kind} reply={exc.reply.code} {exc.reply.status}"
                await self.audit(actor, "release", message_id, "upstream_failed", detail)
                raise
            updated = await self.store.mark_released(message_id, actor, store_mode(mode))
        finally:
            self._busy.discard(message_id)
        detail = f"mode={mode} reply={reply.code} {reply.status}".rstrip()
        await self.audit(actor, "release", message_id, "ok", detail)
        return updated, reply

    async def delete(self, message_id: str, actor: str) -> None:
        """Mark deleted and wipe the bytes."""
        await self._held(message_id, actor, "delete")
        await self.store.delete(message_id, actor)
        await self.audit(actor, "delete", message_id, "ok")

    async def purge(self, cutoff_epoch: float, actor: str) -> int:
        """Remove every message received before ``cutoff_epoch``; returns how many."""
        count = await self.store.expire(cutoff_epoch)
        await self.audit(actor, "purge", "*", "ok", f"cutoff={cutoff_epoch:.0f} removed={count}")
        return count
