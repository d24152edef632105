"""The one log line of every SMTP transaction, with a message or without one.

Addresses are redacted here (the sender, a user name that is an address);
upstream reply texts are left out because they may quote the sender.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from relay.codes import Reply
from relay.envelope import Envelope
from relay.errors import UpstreamError
from relay.inspect import ParsedMessage
from relay.policy.verdict import Verdict

if TYPE_CHECKING:
    from relay.smtp.context import FrontContext

__all__ = ["log_abandoned", "log_transaction", "loggable_cause"]


def log_transaction(
    ctx: FrontContext,
    env: Envelope,
    message: ParsedMessage,
    verdict: Verdict,
    reply: Reply,
    inspect_seconds: float,
    started: float,
) -> None:
    """Log a transaction that carried a message: its verdict, reply and timings.

    ``started`` is the :func:`time.monotonic` of its MAIL FROM."""
    redact = ctx.redact
    ctx.log.info(
        "transaction",
        queue_id=env.queue_id,
        client_ip=env.client_ip,
        **_session_log_fields(env.auth_user, env.tls_version, env.tls_cipher, redact),
        sender=redact(env.mail_from) if env.mail_from else "<>",
        recipients=len(env.rcpt_tos),
        size=message.size,
        line_endings_normalised=message.normalised,
        action=str(verdict.action),
        rule=verdict.rule,
        calendar_fallback=str(verdict.calendar_fallback) if verdict.calendar_fallback else None,
        exposure=verdict.exposure.counts(),
        reply_code=reply.code,
        reply_status=reply.status,
        inspect_seconds=round(inspect_seconds, 6),
        duration_seconds=round(time.monotonic() - started, 6),
    )


def log_abandoned(
    ctx: FrontContext,
    queue_id: str,
    client_ip: str,
    front: Mapping[str, Any],
    *,
    recipients: int,
    started: float,
    outcome: str,
    stage: str | None,
) -> None:
    """Log a transaction that ended without a message (RSET, QUIT, a hang-up, a
    timeout, an upstream refusal at MAIL or RCPT): still one line per transaction.

    ``front`` holds the AUTH user and TLS fields taken when the transaction began."""
    ctx.log.info(
        "transaction",
        queue_id=queue_id,
        client_ip=client_ip,
        **_session_log_fields(
            front.get("auth_user"),
            front.get("tls_version", ""),
            front.get("tls_cipher", ""),
            ctx.redact,
        ),
        recipients=recipients,
        outcome=outcome,
        **({"stage": stage} if stage else {}),
        duration_seconds=round(time.monotonic() - started, 6),
    )


def _session_log_fields(
    user: str | None, tls_version: str, tls_cipher: str, redact: Callable[[str], str]
) -> dict[str, str | None]:
    """AUTH and TLS for every transaction line (with a message or without one);
    a user name that is an address is redacted."""
    return {
        "auth_user": redact(user) if user and "@" in user else user,
        "tls": tls_version or None,
        "tls_cipher": tls_cipher or None,
    }


def loggable_cause(exc: UpstreamError) -> dict[str, str]:
    """Why the upstream connection failed (e.g. the certificate check), for the log.

    Left out for 4xx/5xx: those texts are the upstream's and may quote the sender.
    """
    return {} if exc.kind in ("4xx", "5xx") else {"error": str(exc)}
