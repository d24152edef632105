"""Shared pieces of the sender self-service tests: a relay with [review] on, a held
message sent by a real SMTP client, the notice that arrived upstream and its link."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import smtplib
from typing import Any

from relay.settings import Settings
from tests.helpers.admin import EXTERNAL_RCPTS, INTERNAL_RCPTS, make_message
from tests.helpers.process import free_port
from tests.helpers.relay import settings_for
from tests.helpers.upstream import Received, RecordingUpstream
from tests.helpers.waiting import wait_until

__all__ = [
    "SENDER",
    "body_of",
    "held_rules",
    "notice_link",
    "notices_to_sender",
    "review_settings",
    "send_held",
]

SENDER = "coordinator@example.org"
_LINK = re.compile(r"(https?://\S+/r/[A-Za-z0-9._-]+)")


def held_rules(**extra: Any) -> list[dict[str, Any]]:
    """One quarantine rule for the test message (12 external recipients)."""
    return [{"name": "hold-training", "min_visible_external": 5, "action": "quarantine", **extra}]


def review_settings(upstream_port: int, *, rules: list[dict[str, Any]] | None = None,
                    **review: Any) -> Settings:  # fmt: skip
    """Settings with notices and the sender page on the admin listener (a fixed free port,
    so the link in the notice points at it)."""
    port = free_port()
    return settings_for(
        upstream_port,
        admin={"listen": f"127.0.0.1:{port}"},
        policy={"rules": rules or held_rules()},
        notifications={"enabled": True, "from": "ccguard@example.org"},
        review={"public_url": f"http://127.0.0.1:{port}", "max_refusals": 3, **review},
    )


def _send(port: int, subject: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("app.example.org")
        client.mail(SENDER)
        for rcpt in (*INTERNAL_RCPTS, *EXTERNAL_RCPTS):
            client.rcpt(rcpt)
        return client.data(make_message(subject))


async def send_held(smtp_port: int, subject: str = "Welcome to the training") -> str:
    """A real SMTP client sends the test message; it is held; returns its quarantine id."""
    code, text = await asyncio.to_thread(_send, smtp_port, subject)
    assert code == 250 and text.startswith(b"2.0.0 held for review as "), text
    return text.decode().rsplit(" ", 1)[1]


def notices_to_sender(upstream: RecordingUpstream) -> list[Received]:
    """What the upstream received for the sender with the null envelope sender."""
    return [m for m in upstream.messages if m.mail_from in ("", "<>") and m.rcpt_tos == [SENDER]]


def body_of(received: Received) -> str:
    """The decoded text of a notice."""
    msg = email.message_from_bytes(received.data, policy=email.policy.default)
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


async def notice_link(upstream: RecordingUpstream, count: int = 1) -> str:
    """The self-service link of the ``count``-th notice to the sender (waits for it)."""
    await wait_until(
        lambda: len(notices_to_sender(upstream)) >= count,
        lambda: f"{len(notices_to_sender(upstream))} notices arrived, wanted {count}",
        10.0,
    )
    text = body_of(notices_to_sender(upstream)[count - 1])
    found = _LINK.search(text)
    assert found, text
    return found.group(1)
