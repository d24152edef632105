"""Policy on calendar invitations: the ``calendar`` conditions and the rewrite/split fallback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relay.envelope import Envelope
from relay.errors import ConfigError
from relay.inspect import CalendarLimits, DomainMatcher, Exposure, inspect_message
from relay.policy import evaluate
from relay.settings import Action, PolicySettings, load_settings
from tests.helpers.calendar import attendee_lines, ics, invitation, multipart, part

MATCHER = DomainMatcher(["example.org"])
SENDER = Envelope(mail_from="alice@example.org", rcpt_tos=())
HIDE = {"name": "hide", "action": "rewrite", "min_visible_external": 3}


def _invite(externals: int, internals: int = 0, to: str = "Bob <bob@example.com>") -> Exposure:
    lines = attendee_lines(externals) + attendee_lines(internals, domain="example.org")
    message = invitation(part(ics(lines)), to=to)
    return inspect_message(message, MATCHER, max_header_bytes=1 << 20)


def _plain(externals: int) -> Exposure:
    to = ", ".join(f"p{i}@example.com" for i in range(externals))
    return inspect_message(f"To: {to}\r\n\r\nhi".encode(), MATCHER, max_header_bytes=1 << 20)


def _policy(*rules: dict[str, Any], **options: Any) -> PolicySettings:
    return PolicySettings.model_validate({**options, "rules": list(rules)})


def test_min_visible_external_counts_attendees_of_a_single_to_invitation() -> None:
    policy = _policy({"name": "hold", "action": "quarantine", "min_visible_external": 20})
    verdict = evaluate(_invite(20), SENDER, policy)
    assert verdict.rule == "hold"
    assert verdict.exposure.visible_external == 21  # bob in To + 20 attendees
    assert "and a calendar invitation (20 external attendees)" in verdict.reason


def test_calendar_true_matches_only_invitations_and_false_only_other_mail() -> None:
    only = _policy({"name": "invites", "action": "quarantine", "calendar": True})
    never = _policy({"name": "mail", "action": "quarantine", "calendar": False})
    assert evaluate(_invite(2), SENDER, only).rule == "invites"
    assert evaluate(_plain(2), SENDER, only).rule is None
    assert evaluate(_invite(2), SENDER, never).rule is None
    assert evaluate(_plain(2), SENDER, never).rule == "mail"


def test_calendar_truncated_condition() -> None:
    policy = _policy({"name": "unread", "action": "quarantine", "calendar_truncated": True})
    cut = inspect_message(
        invitation(part(ics(attendee_lines(40)))),
        MATCHER,
        max_header_bytes=1 << 20,
        calendar_limits=CalendarLimits(max_bytes=200),
    )
    assert cut.calendar_truncated
    verdict = evaluate(cut, SENDER, policy)
    assert verdict.rule == "unread"
    assert "calendar data not fully read" in verdict.reason
    assert evaluate(_invite(40), SENDER, policy).rule is None


@pytest.mark.parametrize("action", ["rewrite", "split"])
def test_rewrite_and_split_fall_back_to_quarantine_by_default(action: str) -> None:
    policy = _policy({**HIDE, "action": action})
    verdict = evaluate(_invite(20), SENDER, policy)
    assert verdict.action is Action.QUARANTINE
    assert verdict.matched_action is Action.QUARANTINE
    assert verdict.calendar_fallback is Action(action)
    assert verdict.reason.endswith(
        f"; rule hide: {action} cannot hide calendar attendees, quarantine instead"
    )


@pytest.mark.parametrize("fallback", ["reject", "tag", "quarantine"])
def test_the_fallback_is_configurable(fallback: str) -> None:
    verdict = evaluate(_invite(5), SENDER, _policy(HIDE, calendar_fallback=fallback))
    assert verdict.action is Action(fallback)
    assert verdict.calendar_fallback is Action.REWRITE


def test_other_actions_and_ordinary_mail_are_unchanged() -> None:
    for action in ("quarantine", "reject", "tag", "pass"):
        verdict = evaluate(_invite(5), SENDER, _policy({**HIDE, "action": action}))
        assert (verdict.action, verdict.calendar_fallback) == (Action(action), None)
    plain = evaluate(_plain(5), SENDER, _policy(HIDE))
    assert (plain.action, plain.calendar_fallback) == (Action.REWRITE, None)
    assert "calendar" not in plain.reason


def test_invitation_with_only_internal_attendees_can_still_be_rewritten() -> None:
    to = ", ".join(f"p{i}@example.com" for i in range(5))
    verdict = evaluate(_invite(0, internals=4, to=to), SENDER, _policy(HIDE))
    assert verdict.exposure.calendar and verdict.exposure.calendar_attendees_internal == 5
    assert (verdict.action, verdict.calendar_fallback) == (Action.REWRITE, None)


def test_truncated_calendar_also_falls_back() -> None:
    mixed = multipart("mixed", "b", [part(ics(attendee_lines(50)))])
    to = ", ".join(f"p{i}@example.com" for i in range(5))
    cut = inspect_message(
        invitation(mixed, to=to),
        MATCHER,
        max_header_bytes=1 << 20,
        calendar_limits=CalendarLimits(max_bytes=100),
    )
    assert cut.calendar_attendees_external == 0 and cut.calendar_truncated
    verdict = evaluate(cut, SENDER, _policy(HIDE))
    assert (verdict.action, verdict.calendar_fallback) == (Action.QUARANTINE, Action.REWRITE)


def test_monitor_mode_tags_and_says_what_enforcing_would_do() -> None:
    verdict = evaluate(_invite(5), SENDER, _policy(HIDE, mode="monitor"))
    assert verdict.action is Action.TAG
    assert verdict.matched_action is Action.QUARANTINE
    assert verdict.calendar_fallback is Action.REWRITE
    assert verdict.reason.endswith("quarantine instead would quarantine (monitor mode)")


def test_exempt_attendees_are_not_counted_and_need_no_fallback() -> None:
    rule = {**HIDE, "min_visible_external": 1, "exempt_recipients": ["*@example.com"]}
    to = "x@example.net, y@example.net"
    verdict = evaluate(_invite(5, to=to), SENDER, _policy(rule))
    assert verdict.exposure.calendar_attendees_external == 0
    assert verdict.exposure.visible_external == 2
    assert (verdict.action, verdict.calendar_fallback) == (Action.REWRITE, None)
    held = evaluate(_invite(5, to=to), SENDER, _policy({**rule, "exempt_recipients": []}))
    assert held.calendar_fallback is Action.REWRITE


def test_fallback_must_be_quarantine_reject_or_tag(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[policy]\ncalendar_fallback = "rewrite"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    assert "policy.calendar_fallback" in str(info.value)
    config.write_text('[policy]\ncalendar_fallback = "reject"\n')
    assert load_settings(config).policy.calendar_fallback == "reject"
