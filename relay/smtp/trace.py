"""Queue ids and the one ``Received:`` header ccguard adds."""

from __future__ import annotations

import secrets
from datetime import datetime
from email.utils import format_datetime

from relay.envelope import Envelope

__all__ = ["new_queue_id", "received_header"]

_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXZ"


def new_queue_id() -> str:
    """A short random id like Postfix's, shown to clients and in every log line."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(12))


def _protocol(envelope: Envelope, tls: bool) -> str:
    # RFC 3848 / RFC 6531 "with" keywords.
    base = "UTF8SMTP" if envelope.smtputf8 else "ESMTP"
    return base + ("S" if tls else "") + ("A" if envelope.auth_user else "")


def received_header(
    envelope: Envelope, *, hostname: str, now: datetime, tls: bool = False
) -> bytes:
    """The trace header for ``envelope``, folded, ending in CRLF.

    ``with`` is ESMTPS when the client used TLS (``tls`` or ``envelope.tls_version``),
    ESMTPSA when it also authenticated (RFC 3848).
    It deliberately has no ``for <address>`` clause: with several envelope
    recipients that clause would disclose Bcc recipients to everybody.
    """
    helo = envelope.client_helo or "unknown"
    protocol = _protocol(envelope, tls or bool(envelope.tls_version))
    ip = envelope.client_ip
    literal = f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
    text = (
        f"Received: from {helo} ({literal})\r\n"
        f"\tby {hostname} (ccguard) with {protocol} id {envelope.queue_id};\r\n"
        f"\t{format_datetime(now)}\r\n"
    )
    return text.encode("utf-8", "surrogateescape")
