"""Split plan, reject/held replies and sender notices (pure parts)."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from relay.actions import (
    build_notice,
    held_reply,
    is_auto_submitted,
    plan_split,
    reject_reply,
    should_notify,
    split_key,
)
from relay.actions.bounce import build_split_bounce
from relay.actions.split import delivered_id, is_delivered_id, refused_id
from relay.codes import Reply
from relay.envelope import Envelope
from relay.settings import Action, NotificationSettings
from tests.helpers.actions import MATCHER, exposure_of, field_list, make_verdict, parsed

MSG = (
    b"From: Ann <ann@example.org>\r\n"
    b"To: Guest One <g1@example.com>, g2@example.net, Bob <bob@example.org>\r\n"
    b"Cc: g3@example.com, carol@example.org\r\n"
    b"Bcc: hidden@example.net\r\n"
    b"Subject: Training\r\n"
    b"Message-ID: <m1@example.org>\r\n"
    b"\r\nbody\r\n"
)
ENV = Envelope(
    mail_from="ann@example.org",
    rcpt_tos=("g1@example.com", "g2@example.net", "bob@example.org", "G1@example.com",
              "g3@example.com", "carol@example.org", "hidden@example.net"),
)  # fmt: skip


def test_each_external_copy_shows_only_its_own_recipient() -> None:
    copies = plan_split(parsed(MSG), ENV, MATCHER)
    assert [c.rcpts for c in copies] == [
        ("g1@example.com",), ("g2@example.net",), ("g3@example.com",), ("hidden@example.net",),
        ("bob@example.org", "carol@example.org"),
    ]  # fmt: skip
    first = copies[0].message
    assert first == (
        b"X-CCGuard-Action: split\r\nFrom: Ann <ann@example.org>\r\n"
        b"To: Guest One <g1@example.com>\r\nSubject: Training\r\n"
        b"Message-ID: <m1@example.org>\r\n\r\nbody\r\n"
    )
    for copy in copies[:4]:
        exposure = exposure_of(copy.message)
        assert exposure.external_addresses == copy.rcpts
        assert exposure.visible_internal == 0
        assert b"Message-ID: <m1@example.org>\r\n" in copy.message
        assert b"hidden@" not in copy.message or copy.rcpts == ("hidden@example.net",)


def test_the_internal_copy_shows_internal_addresses_only() -> None:
    internal = plan_split(parsed(MSG), ENV, MATCHER)[-1]
    assert internal.internal and internal.rcpts == ("bob@example.org", "carol@example.org")
    exposure = exposure_of(internal.message)
    assert exposure.visible_external == 0
    assert set(exposure.internal_addresses) == {"bob@example.org", "carol@example.org"}
    assert dict(field_list(internal.message))["to"] == b" Bob <bob@example.org>\r\n"


def test_key_depends_on_sender_and_bytes_only() -> None:
    # A retry to a subset of the recipients (e.g. only the deferred ones) has the same key.
    subset = Envelope(ENV.mail_from, ("g3@example.com",), queue_id="OTHER")
    assert split_key(ENV, MSG) == split_key(subset, MSG)
    assert split_key(ENV, MSG) != split_key(ENV, MSG + b"x")
    assert split_key(ENV, MSG) != split_key(Envelope("x@example.org", ENV.rcpt_tos), MSG)


def test_ledger_ids_are_per_recipient_stable_and_hide_addresses() -> None:
    assert delivered_id("G1@" + "example".upper() + ".com") == delivered_id("g1@example.com")
    assert delivered_id("g1@example.com") != delivered_id("g2@example.com")
    assert delivered_id("g1@example.com") != refused_id("g1@example.com")
    assert is_delivered_id(delivered_id("g1@example.com"))
    assert not is_delivered_id(refused_id("g1@example.com"))
    ids = [delivered_id(r) for r in ENV.rcpt_tos] + [refused_id(r) for r in ENV.rcpt_tos]
    assert not any("@" in i or "example" in i for i in ids)


def test_reject_reply_says_what_to_do() -> None:
    reply = reject_reply(make_verdict(Action.REJECT))
    assert str(reply) == (
        "550 5.7.1 Message would show 312 external addresses (41 domains) in To/Cc; "
        "put recipients in Bcc or use mail merge"
    )
    one = reject_reply(make_verdict(Action.REJECT, external=1, domains=1, total=1))
    assert "1 external address (1 domain)" in one.text
    assert str(held_reply("Ab3")) == "250 2.0.0 held for review as Ab3"


def _notice(action: Action = Action.QUARANTINE) -> bytes:
    return build_notice(
        envelope=ENV, verdict=make_verdict(action), quarantine_id="q-123",
        from_address="postmaster@example.org", hostname="ccguard.example.org",
        subject="Grüße \u2014 training", now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )  # fmt: skip


def test_notice_is_short_plain_text_with_the_facts_and_no_recipient_list() -> None:
    raw = _notice()
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["To"] == "ann@example.org"
    assert parsed["From"] == "postmaster@example.org"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-CCGuard-Notice"] == "quarantine"
    assert parsed["Subject"] == "Your message is held for review: Grüße \u2014 training"
    assert parsed.get_content_type() == "text/plain"
    text = parsed.get_content()
    facts = ("Grüße \u2014 training", "2026-01-02 03:04:05 UTC", "bulk-external", "q-123")
    for fact in (*facts, "312 external addresses (41 domains)", "What happens next"):
        assert fact in text
    assert b"example.com" not in raw and b"example.net" not in raw
    assert all(byte < 128 for byte in raw), "notice must be 7-bit clean"
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


def test_a_notice_is_recognised_as_automatic() -> None:
    assert is_auto_submitted(parsed(_notice()))
    assert is_auto_submitted(parsed(b"Auto-Submitted: auto-replied\r\n\r\n"))
    assert not is_auto_submitted(parsed(b"Auto-Submitted: no\r\n\r\n"))
    assert not is_auto_submitted(parsed(MSG))


def test_who_gets_a_notice() -> None:
    on = NotificationSettings(enabled=True, on_actions=[Action.QUARANTINE])
    held = make_verdict(Action.QUARANTINE)
    assert should_notify(on, MATCHER, ENV, held, parsed(MSG))
    assert not should_notify(NotificationSettings(), MATCHER, ENV, held, parsed(MSG))
    assert not should_notify(on, MATCHER, ENV, make_verdict(Action.REWRITE), parsed(MSG))
    external = Envelope("someone@example.com", ENV.rcpt_tos)
    assert not should_notify(on, MATCHER, external, held, parsed(MSG))
    null = Envelope("", ENV.rcpt_tos)
    assert not should_notify(on, MATCHER, null, held, parsed(MSG))
    assert not should_notify(on, MATCHER, ENV, held, parsed(_notice()))


def test_bounce_copies_no_control_characters_from_subject_or_server_reply() -> None:
    raw = build_split_bounce(
        mail_from="ann@example.org",
        refused={"g1@example.com": Reply(550, "5.1.1", "No\x00such\x1b user\x85")},
        from_address="postmaster@example.org", hostname="ccguard.example.org",
        subject="Pay\x00roll\r\nBcc: g2@example.net\x7f", now=datetime(2026, 1, 2, tzinfo=UTC),
    )  # fmt: skip
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert (
        str(parsed["Subject"]) == "Undelivered copies of your message: Pay roll Bcc: g2@example.net"
    )
    assert parsed["Bcc"] is None
    text = parsed.get_content().replace("\r\n", "\n")
    assert "    server said: 550 5.1.1 No such user\n" in text
    assert not any(chr(c) in text for c in (*range(0x0A), *range(0x0B, 0x20), *range(0x7F, 0xA0)))
