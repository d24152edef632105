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

import email.message
import email.policy
import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime

from relay.actions.notices import NOTICE_HEADER
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
        lines.append(f"    server said: {' '.join(str(reply).split())}")
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
    notice = email.message.EmailMessage(policy=email.policy.SMTP)
    notice["From"] = from_address
    notice["To"] = mail_from
    subject = " ".join(subject.split())
    notice["Subject"] = f"Undelivered copies of your message: {subject}"
    notice["Date"] = email.utils.format_datetime(now)
    notice["Message-ID"] = email.utils.make_msgid("ccguard", domain=hostname)
    notice["Auto-Submitted"] = "auto-replied"
    notice[NOTICE_HEADER] = BOUNCE_KIND
    notice.set_content(_body(refused, subject, now), cte="quoted-printable")
    return notice.as_bytes()
