"""The delivery-failure notice for split copies the upstream refused for good.

Once some copies of a split message were delivered, ccguard answers the client
``250`` (or ``451`` while others are still pending), so the client will never
report the refused recipients itself: ccguard owes the sender a bounce.  It is
plain text with ``Auto-Submitted: auto-replied`` (RFC 3834) and goes to any
non-null envelope sender, with the null envelope sender, so it can never be
bounced in turn.  It names the refused addresses (the sender wrote them) and
the upstream's reply; the log never does.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from relay.actions.notices import compose_notice, one_line
from relay.codes import Reply

__all__ = ["BOUNCE_KIND", "build_split_bounce"]

BOUNCE_KIND = "split-failure"

_INTRO = (
    "Your message was split into separate copies, one per external recipient.\n"
    "The receiving mail server refused the copies for the recipients below, so\n"
    "they did not get your message. Everyone else did.\n\n"
    "What to do: check these addresses. There is no need to send the message\n"
    "again to the other recipients."
)


def _body(refused: Mapping[str, Reply], subject: str, now: datetime) -> str:
    lines = [
        _INTRO,
        "",
        f"Subject:  {subject or '(no subject)'}",
        f"Received: {now.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        "",
        "Not delivered to:",
    ]
    for rcpt, reply in refused.items():
        lines.append(f"  <{rcpt}>")
        lines.append(f"    server said: {one_line(str(reply))}")
    return "\n".join(lines) + "\n"


def build_split_bounce(
    *,
    mail_from: str,
    refused: Mapping[str, Reply],
    from_address: str,
    hostname: str,
    subject: str,
    now: datetime,
) -> bytes:
    """The bounce to ``mail_from`` listing ``refused`` (address → upstream reply),
    as wire bytes (CRLF).  ``subject`` is the original message's decoded Subject."""
    subject = one_line(subject)
    return compose_notice(
        from_address=from_address,
        to=mail_from,
        subject=f"Undelivered copies of your message: {subject}",
        body=_body(refused, subject, now),
        kind=BOUNCE_KIND,
        auto_submitted="auto-replied",
        hostname=hostname,
        now=now,
    )
