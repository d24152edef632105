"""Policy: rule order, every condition, every exemption, monitor mode."""

from __future__ import annotations

from typing import Any

import pytest

from relay.envelope import Envelope
from relay.inspect import DomainMatcher, Exposure, inspect_message
from relay.policy import AddressPatterns, evaluate
from relay.settings import Action, PolicySettings

MATCHER = DomainMatcher(["example.org"])
SENDER = Envelope(mail_from="alice@example.org", rcpt_tos=())


def _exposure(to: list[str], cc: list[str] | None = None) -> Exposure:
    head = f"To: {', '.join(to)}\r\n" if to else ""
    head += f"Cc: {', '.join(cc)}\r\n" if cc else ""
    message = (head + "\r\nbody").encode()
    return inspect_message(message, MATCHER, max_header_bytes=1 << 20)


def _external(n: int, domains: int = 1) -> list[str]:
    return [f"user{i}@d{i % domains}.example.com" for i in range(n)]


def _policy(*rules: dict[str, Any], mode: str = "enforce") -> PolicySettings:
    return PolicySettings.model_validate({"mode": mode, "rules": list(rules)})


def test_no_rules_means_pass() -> None:
    verdict = evaluate(_exposure(_external(500)), SENDER, _policy())
    assert verdict.action is Action.PASS
    assert verdict.rule is None
    assert verdict.matched_action is None
    assert "500 external addresses" in verdict.reason


def test_first_matching_rule_wins() -> None:
    policy = _policy(
        {"name": "reject-huge", "action": "reject", "min_visible_external": 100},
        {"name": "hold", "action": "quarantine", "min_visible_external": 10},
        {"name": "hide", "action": "rewrite", "min_visible_external": 5},
    )
    assert evaluate(_exposure(_external(150)), SENDER, policy).rule == "reject-huge"
    assert evaluate(_exposure(_external(50)), SENDER, policy).rule == "hold"
    assert evaluate(_exposure(_external(5)), SENDER, policy).action is Action.REWRITE
    assert evaluate(_exposure(_external(4)), SENDER, policy).rule is None


def test_reason_is_one_sentence_with_the_counts_and_rule() -> None:
    policy = _policy({"name": "hold-mass-disclosure", "action": "quarantine"})
    verdict = evaluate(_exposure(_external(312, domains=41)), SENDER, policy)
    assert verdict.reason == (
        "would show 312 external addresses from 41 domains in To/Cc; rule hold-mass-disclosure"
    )
    one = evaluate(_exposure(_external(1)), SENDER, policy)
    assert one.reason.startswith("would show 1 external address from 1 domain in")


@pytest.mark.parametrize(
    ("condition", "below", "at"),
    [
        ({"min_visible_external": 15}, _exposure(_external(14)), _exposure(_external(15))),
        (
            {"min_external_domains": 3},
            _exposure(_external(20, domains=2)),
            _exposure(_external(20, domains=3)),
        ),
        (
            {"min_visible_total": 4},
            _exposure(["a@example.org", "b@example.org"], _external(1)),
            _exposure(["a@example.org", "b@example.org"], _external(2)),
        ),
        (
            {"min_unparseable": 2},
            _exposure(["Bob bob@example.com", "c@example.com"]),
            _exposure(["Bob bob@example.com", "Eve eve@example.net"]),
        ),
        (
            {"header_too_large": True},
            _exposure(_external(3)),
            Exposure(visible_external=3, external_domains=1, header_too_large=True),
        ),
    ],
    ids=["visible-external", "external-domains", "visible-total", "unparseable", "too-large"],
)
def test_each_condition_is_a_threshold(
    condition: dict[str, Any], below: Exposure, at: Exposure
) -> None:
    policy = _policy({"name": "r", "action": "reject", **condition})
    assert evaluate(below, SENDER, policy).rule is None
    assert evaluate(at, SENDER, policy).rule == "r"


def test_all_conditions_must_hold() -> None:
    policy = _policy(
        {"name": "r", "action": "reject", "min_visible_external": 10, "min_external_domains": 5}
    )
    assert evaluate(_exposure(_external(50, domains=4)), SENDER, policy).rule is None
    assert evaluate(_exposure(_external(50, domains=5)), SENDER, policy).rule == "r"


def test_too_large_header_reason_says_so() -> None:
    policy = _policy({"name": "big", "action": "quarantine", "header_too_large": True})
    verdict = evaluate(
        Exposure(visible_external=7, external_domains=2, header_too_large=True), SENDER, policy
    )
    assert verdict.reason.startswith("header block over the size limit, would show at least 7")


def test_senders_limits_a_rule_to_those_senders() -> None:
    policy = _policy(
        {"name": "bulk", "action": "split", "senders": ["*@BULK.example.org", "news@example.org"]},
        {"name": "others", "action": "reject"},
    )
    exposure = _exposure(_external(30))
    for sender in ("x@bulk.example.org", "news@" + "example".upper() + ".org"):
        assert evaluate(exposure, Envelope(sender, ()), policy).rule == "bulk"
    for sender in ("alice@example.org", "News@example.org", "x@sub.bulk.example.org", ""):
        assert evaluate(exposure, Envelope(sender, ()), policy).rule == "others"


def test_exempt_senders_skip_a_rule() -> None:
    policy = _policy(
        {"name": "hold", "action": "quarantine", "exempt_senders": ["*@*.example.org", "<>"]},
    )
    exposure = _exposure(_external(30))
    assert evaluate(exposure, Envelope("hr@mail.example.org", ()), policy).rule is None
    assert evaluate(exposure, Envelope("", ()), policy).rule is None
    assert evaluate(exposure, Envelope("hr@example.org", ()), policy).rule == "hold"


def test_exempt_recipients_are_not_counted() -> None:
    policy = _policy(
        {
            "name": "hold",
            "action": "quarantine",
            "min_visible_external": 3,
            "exempt_recipients": ["list@lists.example.net", "*@partner.example.com"],
        },
    )
    to = ["list@lists.example.net", "a@partner.example.com", "b@partner.example.com", "c@x.example"]
    exposure = _exposure(to, ["d@y.example"])
    assert exposure.visible_external == 5
    passed = evaluate(exposure, SENDER, policy)
    assert passed.rule is None
    assert passed.exposure.visible_external == 5  # no rule matched: the original exposure
    held = evaluate(_exposure([*to, "e@z.example"], ["d@y.example"]), SENDER, policy)
    assert held.rule == "hold"
    assert held.exposure.visible_external == 3
    assert held.exposure.external_domains == 3
    assert held.exposure.per_header == {"to": 2, "cc": 1, "resent-to": 0, "resent-cc": 0}
    assert "list@lists.example.net" not in held.exposure.external_addresses


def test_exempt_recipients_also_leave_unparseable_count() -> None:
    policy = _policy(
        {
            "name": "junk",
            "action": "reject",
            "min_unparseable": 1,
            "exempt_recipients": ["*@example.com"],
        },
    )
    exposure = _exposure(["Bob bob@example.com", "c@example.net"])
    assert exposure.unparseable == 1
    assert evaluate(exposure, SENDER, policy).rule is None


def test_monitor_mode_tags_and_keeps_the_rule_action() -> None:
    policy = _policy(
        {"name": "hold", "action": "quarantine", "min_visible_external": 10}, mode="monitor"
    )
    verdict = evaluate(_exposure(_external(20)), SENDER, policy)
    assert verdict.action is Action.TAG
    assert verdict.matched_action is Action.QUARANTINE
    assert verdict.monitor
    assert verdict.rule == "hold"
    assert "would quarantine (monitor mode)" in verdict.reason


def test_monitor_mode_without_match_passes() -> None:
    policy = _policy(
        {"name": "hold", "action": "quarantine", "min_visible_external": 10}, mode="monitor"
    )
    verdict = evaluate(_exposure(_external(2)), SENDER, policy)
    assert verdict.action is Action.PASS
    assert verdict.rule is None


def test_pass_rule_allow_lists_in_both_modes() -> None:
    rules = (
        {"name": "newsletter", "action": "pass", "senders": ["news@example.org"]},
        {"name": "hold", "action": "quarantine"},
    )
    for mode in ("enforce", "monitor"):
        verdict = evaluate(
            _exposure(_external(99)), Envelope("news@example.org", ()), _policy(*rules, mode=mode)
        )
        assert (verdict.action, verdict.rule) == (Action.PASS, "newsletter")


def test_address_patterns() -> None:
    patterns = AddressPatterns(
        ["*@example.com", "*@*.example.net", "Boss@" + "example.org".title()]
    )
    assert patterns.matches("a@" + "example".upper() + ".com")
    assert patterns.matches("a@b.c.example.net")
    assert not patterns.matches("a@example.net")
    assert patterns.matches("Boss@example.org")
    assert not patterns.matches("boss@example.org")
    assert not patterns.matches("")
    assert not AddressPatterns([])


def test_auth_users_limits_a_rule_to_who_logged_in() -> None:
    policy = _policy(
        {"name": "newsletter-app", "action": "split", "auth_users": ["newsletter"]},
        {"name": "other-apps", "action": "quarantine", "auth_users": ["*"]},
        {"name": "not-logged-in", "action": "reject", "auth_users": ["-"]},
    )
    exposure = _exposure(_external(20))
    as_user = {
        name: evaluate(exposure, Envelope("a@example.org", (), auth_user=name), policy).rule
        for name in ("newsletter", "crm", None)
    }
    assert as_user == {"newsletter": "newsletter-app", "crm": "other-apps", None: "not-logged-in"}
    # A name is matched exactly: "Newsletter" is another user.
    upper = Envelope("a@example.org", (), auth_user="Newsletter")
    assert evaluate(exposure, upper, policy).rule == "other-apps"
