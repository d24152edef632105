"""Notices to internal senders whose message was held (or changed), and their delivery.

A notice is short plain text: the original subject, the time, the counts,
the rule, what happens next and the quarantine id; never an address other
than the sender's own in To.  It carries ``Auto-Submitted: auto-generated``
(RFC 3834) and ``X-CCGuard-Notice``, is sent with the null envelope sender,
and no notice is ever made about a message that carries either header, so
notices cannot loop.
"""

from __future__ import annotations

import email.message
import email.policy
import email.utils
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from relay.actions.replies import exposure_phrase
from relay.envelope import Envelope
from relay.inspect.domains import DomainMatcher
from relay.inspect.parsed import ParsedMessage
from relay.policy.verdict import Verdict
from relay.settings import Action, NotificationSettings

__all__ = [
    "NOTICE_HEADER",
    "NoticeExtra",
    "build_notice",
    "compose_notice",
    "is_auto_submitted",
    "one_line",
    "should_notify",
]

NOTICE_HEADER = "X-CCGuard-Notice"
# C0 controls (NUL, CR, LF, ESC, ...), DEL and C1 controls.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")

_SUBJECTS = {
    Action.QUARANTINE: "Your message is held for review",
    Action.REWRITE: "Your message was delivered with external recipients hidden",
    Action.SPLIT: "Your message was delivered as separate copies",
    Action.REJECT: "Your message was not sent",
}
_OUTCOMES = {
    Action.QUARANTINE: (
        "Your message has not been delivered to anyone yet. It is held for review\n"
        "because it would have shown many recipients each other's addresses.\n\n"
        "What happens next: an administrator will either deliver it (possibly with\n"
        "the recipients hidden) or delete it. You do not need to send it again.\n"
        "If the recipients should not see each other, put them in Bcc or use mail\n"
        "merge next time. Quote the quarantine id below if you ask about it."
    ),
    Action.REWRITE: (
        "Your message was delivered to every recipient, but the external addresses\n"
        "were removed from To/Cc so the recipients cannot see each other.\n\n"
        "What happens next: nothing; replies to all will not reach the hidden\n"
        "recipients. Next time put such recipients in Bcc or use mail merge."
    ),
    Action.SPLIT: (
        "Your message was delivered as separate copies: each external recipient\n"
        "got one showing only their own address.\n\n"
        "What happens next: nothing. Next time put such recipients in Bcc or use\n"
        "mail merge."
    ),
    Action.REJECT: (
        "Your message was rejected and delivered to nobody, because it would have\n"
        "shown many recipients each other's addresses.\n\n"
        "What happens next: send it again with the recipients in Bcc, or use\n"
        "mail merge."
    ),
}


@dataclass(frozen=True, slots=True)
class NoticeExtra:
    """What sender self-service adds to a notice: ``outcome`` replaces the
    "what happens next" paragraph (an undo hold), ``links`` is appended."""

    outcome: str = ""
    links: str = ""


def one_line(text: str) -> str:
    """``text`` as one printable line: control characters (C0 including CR, LF
    and NUL, DEL, C1) and runs of whitespace become one space.

    Everything a notice copies from the message or a server (the decoded
    Subject, a reply text) goes through here: an encoded word can carry any
    byte, and a NUL or a CR must not reach the notice's headers or body.
    """
    return " ".join(_CONTROLS.sub(" ", text).split())


def is_auto_submitted(message: ParsedMessage) -> bool:
    """True if ``message`` is a ccguard notice or any automatic message
    (``Auto-Submitted`` other than ``no``): such messages never get a notice."""
    for field in message.fields:
        if field.key == NOTICE_HEADER.lower():
            return True
        if field.key == "auto-submitted":
            keyword = field.value().split(";")[0].split("(")[0].strip().lower()
            if keyword != "no":
                return True
    return False


def should_notify(
    settings: NotificationSettings,
    matcher: DomainMatcher,
    envelope: Envelope,
    verdict: Verdict,
    message: ParsedMessage,
) -> bool:
    """Notices are on, the action is one of ``on_actions``, the envelope sender
    is internal (and not ``<>``), and ``message`` is not itself automatic."""
    return (
        settings.enabled
        and verdict.action in settings.on_actions
        and bool(envelope.mail_from)
        and matcher.is_internal_address(envelope.mail_from)
        and not is_auto_submitted(message)
    )


def _body(
    verdict: Verdict, subject: str, now: datetime, quarantine_id: str | None, extra: NoticeExtra
) -> str:
    lines = [
        extra.outcome or _OUTCOMES.get(verdict.action, "ccguard acted on your message."),
        "",
        f"Subject:       {subject or '(no subject)'}",
        f"Received:      {now.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"Recipients:    {exposure_phrase(verdict.exposure)} visible in To/Cc",
        f"Rule:          {verdict.rule or 'none'}",
    ]
    if quarantine_id:
        lines.append(f"Quarantine id: {quarantine_id}")
    if extra.links:
        lines += ["", extra.links]
    return "\n".join(lines) + "\n"


def build_notice(
    *,
    envelope: Envelope,
    verdict: Verdict,
    quarantine_id: str | None,
    from_address: str,
    hostname: str,
    subject: str,
    now: datetime,
    extra: NoticeExtra | None = None,
) -> bytes:
    """The notice for ``envelope.mail_from`` as wire bytes (CRLF, 7-bit clean).

    ``subject`` is the original message's decoded Subject; ``extra`` adds the
    sender self-service text (relay/review/) when it is on.
    """
    extra = extra or NoticeExtra()
    subject = one_line(subject)
    return compose_notice(
        from_address=from_address,
        to=envelope.mail_from,
        subject=f"{_SUBJECTS.get(verdict.action, 'About your message')}: {subject}",
        body=_body(verdict, subject, now, quarantine_id, extra),
        kind=str(verdict.action),
        auto_submitted="auto-generated",
        hostname=hostname,
        now=now,
    )


def compose_notice(
    *,
    from_address: str,
    to: str,
    subject: str,
    body: str,
    kind: str,
    auto_submitted: str,
    hostname: str,
    now: datetime,
) -> bytes:
    """A plain-text message from ccguard as wire bytes (CRLF, quoted-printable body).

    ``kind`` goes in the ``X-CCGuard-Notice`` header, ``auto_submitted`` in
    ``Auto-Submitted`` (RFC 3834), so no notice is ever made about it.
    """
    notice = email.message.EmailMessage(policy=email.policy.SMTP)
    notice["From"] = from_address
    notice["To"] = to
    notice["Subject"] = one_line(subject)
    notice["Date"] = email.utils.format_datetime(now)
    notice["Message-ID"] = email.utils.make_msgid("ccguard", domain=hostname)
    notice["Auto-Submitted"] = auto_submitted
    notice[NOTICE_HEADER] = kind
    notice.set_content(body, cte="quoted-printable")
    return notice.as_bytes()
