"""Delivering a split message exactly once per recipient, across client retries.

Each planned copy is its own upstream transaction.  Right after the upstream
accepted a copy, ``(key, copy_id)`` is written to the store's ledger
(durably), and a copy already in the ledger is never sent again.  So if copy
k fails transiently, the client gets the 4xx, and its retry of the same
message (same key) sends only the copies not yet accepted.

A copy the upstream refuses permanently does not stop the others.  At the
end: any transient failure → its 4xx (retry); otherwise, if copies were
refused for good and none was ever accepted → the first 5xx; if some were
accepted → 250 (SMTP cannot report a partial DATA failure; each refusal is
logged with the recipient hashed).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from structlog.typing import FilteringBoundLogger

from relay import codes
from relay.actions.ports import Deliverer, Redact
from relay.actions.replies import split_reply
from relay.actions.split import SplitCopy, plan_split
from relay.actions.tag import Tags
from relay.codes import Reply
from relay.envelope import Envelope
from relay.errors import StoreError, UpstreamError, UpstreamPermanentError
from relay.inspect.domains import DomainMatcher
from relay.quarantine.store import QuarantineStore

__all__ = ["SplitDelivery", "copy_options"]

StoreFailed = Callable[[str, Envelope, StoreError], None]


def copy_options(options: Sequence[str]) -> tuple[str, ...]:
    """MAIL FROM parameters for a copy: SIZE dropped (the copy's size differs)."""
    return tuple(opt for opt in options if not opt.upper().startswith("SIZE="))


class SplitDelivery:
    """One attempt at delivering every copy of a split message."""

    def __init__(
        self,
        *,
        upstream: Deliverer,
        store: QuarantineStore,
        log: FilteringBoundLogger,
        redact: Redact,
        on_store_error: StoreFailed,
    ) -> None:
        self._upstream = upstream
        self._store = store
        self._log = log
        self._redact = redact
        self._on_store_error = on_store_error

    async def run(
        self,
        env: Envelope,
        key: str,
        message: bytes,
        matcher: DomainMatcher,
        tags: Tags,
        trace: bytes,
    ) -> Reply:
        """Deliver the copies of ``message`` not yet in the ledger under ``key``."""
        copies = plan_split(message, env, matcher, tags=tags)
        try:
            done = await self._store.copies_done(key)
        except StoreError as exc:  # without the ledger a retry could duplicate: defer
            self._on_store_error("ledger_read", env, exc)
            return codes.STORE_FAILED
        accepted = sum(1 for c in copies if c.copy_id in done)
        refused: list[Reply] = []
        for copy in copies:
            if copy.copy_id in done:
                continue
            try:
                await self._send(env, copy, trace)
            except UpstreamPermanentError as exc:
                refused.append(exc.reply)
                self._log_copy("split_copy_refused", env, copy, exc)
                continue
            except UpstreamError as exc:
                self._log_copy("split_copy_deferred", env, copy, exc)
                return exc.reply
            accepted += 1
            await self._record(env, key, copy)
        self._log.info(
            "message_split", queue_id=env.queue_id, copies=len(copies),
            already_delivered=len(done), refused=len(refused),
        )  # fmt: skip
        if refused and not accepted:
            return refused[0]
        return split_reply(accepted)

    async def _send(self, env: Envelope, copy: SplitCopy, trace: bytes) -> None:
        result = await self._upstream.deliver(
            env.mail_from, copy.rcpts, trace + copy.message, copy_options(env.mail_options)
        )
        for rcpt, reply in result.refused.items():
            self._log.warning(
                "split_recipient_refused", queue_id=env.queue_id, rcpt=self._redact(rcpt),
                code=reply.code, status=reply.status,
            )  # fmt: skip

    async def _record(self, env: Envelope, key: str, copy: SplitCopy) -> None:
        try:
            await self._store.record_copy(key, copy.copy_id)
        except StoreError as exc:
            # The copy is out; carry on so this attempt can still end in 250.
            # Only a later 4xx (and the client's retry) could repeat this copy.
            self._on_store_error("ledger_write", env, exc)

    def _log_copy(self, event: str, env: Envelope, copy: SplitCopy, exc: UpstreamError) -> None:
        rcpt = "internal" if copy.internal else self._redact(copy.rcpts[0])
        self._log.warning(
            event, queue_id=env.queue_id, copy=copy.copy_id, rcpt=rcpt, kind=exc.kind,
            code=exc.reply.code,
        )  # fmt: skip
