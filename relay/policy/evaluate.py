"""Ordered rules → :class:`Verdict` (pure)."""

from __future__ import annotations

import dataclasses
from typing import Any

from relay.envelope import Envelope
from relay.inspect.exposure import Exposure
from relay.policy.patterns import AddressPatterns
from relay.policy.verdict import Verdict
from relay.settings import Action, PolicySettings, RuleSettings

__all__ = [
    "auth_user_in_scope",
    "calendar_action",
    "describe",
    "evaluate",
    "rule_matches",
    "without_recipients",
]

#: Actions that hide addresses by editing the header; they cannot edit an invitation.
_HIDING = (Action.REWRITE, Action.SPLIT)


def evaluate(exposure: Exposure, envelope: Envelope, policy: PolicySettings) -> Verdict:
    """The first rule whose conditions all hold decides; none means pass.

    In monitor mode a matching rule's action becomes ``tag`` (``matched_action``
    keeps the rule's own), except that a ``pass`` rule still passes.  A rewrite
    or split rule whose message shows external calendar attendees (or calendar
    data that could not be read) gets ``policy.calendar_fallback`` instead:
    neither can hide an invitation's attendees without breaking it.
    """
    monitor = policy.mode == "monitor"
    for rule in policy.rules:
        if not _sender_in_scope(rule, envelope.mail_from):
            continue
        if not auth_user_in_scope(rule.auth_users, envelope.auth_user):
            continue
        seen = without_recipients(exposure, AddressPatterns(rule.exempt_recipients))
        if not rule_matches(rule, seen):
            continue
        enforced, replaced = calendar_action(rule.action, seen, policy)
        action = Action.TAG if monitor and enforced is not Action.PASS else enforced
        reason = f"{describe(seen)}; rule {rule.name}"
        if replaced is not None:
            reason += f": {replaced.value} cannot hide calendar attendees, {enforced.value} instead"
        if monitor:
            reason += f" would {enforced.value} (monitor mode)"
        return Verdict(
            action,
            rule.name,
            reason,
            seen,
            matched_action=enforced,
            monitor=monitor,
            calendar_fallback=replaced,
        )
    return Verdict(
        Action.PASS, None, f"{describe(exposure)}; no rule matched", exposure, monitor=monitor
    )


def calendar_action(
    action: Action, exposure: Exposure, policy: PolicySettings
) -> tuple[Action, Action | None]:
    """(action to take, the rewrite/split it replaces or None) for a matching rule."""
    if action not in _HIDING or not (
        exposure.calendar_attendees_external or exposure.calendar_truncated
    ):
        return action, None
    return Action(policy.calendar_fallback), action


def _sender_in_scope(rule: RuleSettings, mail_from: str) -> bool:
    if rule.senders and not AddressPatterns(rule.senders).matches(mail_from):
        return False
    return not (rule.exempt_senders and AddressPatterns(rule.exempt_senders).matches(mail_from))


def auth_user_in_scope(auth_users: list[str], auth_user: str | None) -> bool:
    """True when a rule's ``auth_users`` covers ``auth_user`` (``None``: not logged in).

    Empty covers everybody; ``"*"`` every logged-in user, ``"-"`` clients that did
    not log in, any other entry that user name (exactly, as in the users file).
    """
    if not auth_users:
        return True
    if auth_user is None:
        return "-" in auth_users
    return "*" in auth_users or auth_user in auth_users


def rule_matches(rule: RuleSettings, exposure: Exposure) -> bool:
    """True if every condition ``rule`` sets holds for ``exposure``."""
    minimums = (
        (rule.min_visible_external, exposure.visible_external),
        (rule.min_external_domains, exposure.external_domains),
        (rule.min_visible_total, exposure.visible_total),
        (rule.min_unparseable, exposure.unparseable),
    )
    if any(limit is not None and value < limit for limit, value in minimums):
        return False
    flags = (
        (rule.header_too_large, exposure.header_too_large),
        (rule.calendar, exposure.calendar),
        (rule.calendar_truncated, exposure.calendar_truncated),
    )
    return all(wanted is None or wanted == value for wanted, value in flags)


def without_recipients(exposure: Exposure, exempt: AddressPatterns) -> Exposure:
    """``exposure`` recounted as if the ``exempt`` addresses were not there."""
    if not exempt:
        return exposure
    internal = tuple(a for a in exposure.internal_addresses if not exempt.matches(a))
    external = tuple(a for a in exposure.external_addresses if not exempt.matches(a))
    if len(internal) + len(external) == exposure.visible_total:
        return exposure
    unparseable = tuple(a for a in exposure.unparseable_addresses if not exempt.matches(a))
    per_header = {
        name: tuple(a for a in addrs if not exempt.matches(a))
        for name, addrs in exposure.header_addresses.items()
    }
    return dataclasses.replace(
        exposure,
        visible_total=len(internal) + len(external),
        visible_internal=len(internal),
        visible_external=len(external),
        external_domains=len({a.rpartition("@")[2] for a in external}),
        unparseable=len(unparseable),
        per_header={name: len(addrs) for name, addrs in per_header.items()},
        internal_addresses=internal,
        external_addresses=external,
        unparseable_addresses=unparseable,
        header_addresses=per_header,
        **_calendar_without(exposure, exempt),
    )


def _calendar_without(exposure: Exposure, exempt: AddressPatterns) -> dict[str, Any]:
    internal = tuple(a for a in exposure.calendar_internal_addresses if not exempt.matches(a))
    external = tuple(a for a in exposure.calendar_external_addresses if not exempt.matches(a))
    return {
        "calendar_attendees_internal": len(internal),
        "calendar_attendees_external": len(external),
        "calendar_internal_addresses": internal,
        "calendar_external_addresses": external,
    }


def _plural(count: int, word: str, plural: str) -> str:
    return f"{count} {word if count == 1 else plural}"


def describe(exposure: Exposure) -> str:
    """One address-free phrase: what the message would show in To/Cc."""
    text = (
        f"would show {_plural(exposure.visible_external, 'external address', 'external addresses')}"
        f" from {_plural(exposure.external_domains, 'domain', 'domains')} in To/Cc"
    )
    if exposure.calendar_attendees_external:
        attendees = _plural(
            exposure.calendar_attendees_external, "external attendee", "external attendees"
        )
        text += f" and a calendar invitation ({attendees})"
    if exposure.unparseable:
        text += f" ({exposure.unparseable} of them unparseable)"
    if exposure.calendar_truncated:
        text += "; calendar data not fully read"
    if exposure.header_too_large:
        text = "header block over the size limit, " + text.replace("show", "show at least", 1)
    return text
