"""Delivering a held message when an administrator releases it.

The caller (admin web UI, CLI) calls :meth:`QuarantineReleaser.release`, and
only when it returns marks the message released in the store and writes the
audit entry; an :class:`~relay.errors.UpstreamError` means nothing was
delivered and the message stays held.
"""

from __future__ import annotations

from structlog.typing import FilteringBoundLogger

from relay.actions.ports import Deliverer, Redact, domain_only
from relay.actions.rewrite import rewrite_message
from relay.actions.split_delivery import copy_options
from relay.actions.tag import TAG_ACTION, TAG_EXPOSURE, TAG_RULE, exposure_text, sanitise
from relay.codes import Reply
from relay.inspect.domains import DomainMatcher
from relay.quarantine.store import RELEASE_AS_IS, RELEASE_REWRITE, StoredMessage

__all__ = ["HIDDEN", "QuarantineReleaser", "release_bytes"]

HIDDEN = "hidden"
"""Alias of :data:`relay.quarantine.RELEASE_REWRITE` (recipients hidden)."""


def release_bytes(stored: StoredMessage, mode: str, matcher: DomainMatcher) -> bytes:
    """What a release delivers: ``as-is`` → the held bytes (minus any foreign
    ``X-CCGuard-*`` field); ``rewrite``/``hidden`` → the rewrite action applied,
    tagged ``X-CCGuard-Action: rewrite; released``."""
    if not stored.message:
        raise ValueError(f"quarantined message {stored.id} has no bytes (deleted)")
    if mode == RELEASE_AS_IS:
        return sanitise(stored.message)
    if mode in (RELEASE_REWRITE, HIDDEN):
        tags = [
            (TAG_ACTION, "rewrite; released"),
            (TAG_RULE, stored.rule or "none"),
            (TAG_EXPOSURE, exposure_text(stored.exposure)),
        ]
        return rewrite_message(stored.message, matcher, tags=tags).message
    raise ValueError(f"unknown release mode {mode!r}; use {RELEASE_AS_IS!r} or {RELEASE_REWRITE!r}")


class QuarantineReleaser:
    """Delivers held messages to their stored envelope recipients."""

    def __init__(
        self,
        upstream: Deliverer,
        matcher: DomainMatcher,
        *,
        log: FilteringBoundLogger | None = None,
        redact: Redact = domain_only,
    ) -> None:
        self._upstream = upstream
        self._matcher = matcher
        self._log = log
        self._redact = redact

    async def release(self, stored: StoredMessage, mode: str) -> Reply:
        """Deliver ``stored`` (``mode`` ``as-is`` or ``rewrite``/``hidden``) with its
        stored envelope; return the upstream's reply or raise UpstreamError.
        Recipients the upstream refused while accepting the others are logged."""
        data = release_bytes(stored, mode, self._matcher)
        options = (
            stored.mail_options if mode == RELEASE_AS_IS else copy_options(stored.mail_options)
        )
        result = await self._upstream.deliver(stored.mail_from, stored.rcpt_tos, data, options)
        if self._log is not None:
            for rcpt, reply in result.refused.items():
                self._log.warning(
                    "release_recipient_refused", quarantine_id=stored.id,
                    rcpt=self._redact(rcpt), code=reply.code,
                )  # fmt: skip
            self._log.info("message_released", quarantine_id=stored.id, mode=mode)
        return result.reply
