"""The SMTP replies an action gives the client (texts live in :mod:`relay.codes`)."""

from __future__ import annotations

from relay import codes
from relay.codes import Reply
from relay.inspect.exposure import Exposure
from relay.policy.verdict import Verdict

__all__ = ["exposure_phrase", "held_reply", "reject_reply", "split_reply"]


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def exposure_phrase(exposure: Exposure) -> str:
    """``312 external addresses (41 domains)``, or ``12 addresses`` when the
    rule matched on something other than external addresses."""
    if exposure.visible_external:
        addresses = _plural(exposure.visible_external, "external address", "external addresses")
        return f"{addresses} ({_plural(exposure.external_domains, 'domain', 'domains')})"
    return _plural(exposure.visible_total, "address", "addresses")


def reject_reply(verdict: Verdict) -> Reply:
    """``550 5.7.1 Message would show 312 external addresses (41 domains) in
    To/Cc; put recipients in Bcc or use mail merge`` (counts only, no address)."""
    exposure = verdict.exposure
    if exposure.header_too_large and not exposure.visible_total:
        return codes.REJECT_UNCHECKABLE
    return codes.REJECT_EXPOSURE.with_text(
        codes.REJECT_EXPOSURE.text.format(external=exposure_phrase(exposure))
    )


def held_reply(quarantine_id: str) -> Reply:
    """``250 2.0.0 held for review as <id>``."""
    return codes.HELD_FOR_REVIEW.with_text(codes.HELD_FOR_REVIEW.text.format(id=quarantine_id))


def split_reply(copies: int) -> Reply:
    """``250 2.0.0 OK: delivered as <n> separate copies``."""
    return codes.SPLIT_DELIVERED.with_text(codes.SPLIT_DELIVERED.text.format(copies=copies))
