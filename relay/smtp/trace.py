"""Queue ids and the one ``Received:`` header ccguard adds."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import secrets
from datetime import datetime
from email.utils import format_datetime

from relay.envelope import Envelope

__all__ = ["new_queue_id", "received_header", "trace_helo"]

_ALPHABET = "0123456789BCDFGHJKLMNPQRSTVWXZ"
# RFC 5321 sub-domain (underscore tolerated, as mail software writes it).
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# Kept in a HELO that is no domain: printable ASCII without the characters
# that structure a Received header (comments, the date after ";") or quote.
_UNSAFE_HELO = re.compile(r'[^\x21-\x7e]|[();"\\]')
_MAX_HELO = 100


def new_queue_id() -> str:
    """A short random id like Postfix's, shown to clients and in every log line."""
    # One draw of 80 bits cut into base-30 digits: a third of the CPU of twelve
    # secrets.choice calls, and 2**80 >> 30**12 keeps the digits uniform.
    n = int.from_bytes(secrets.token_bytes(10), "big")
    digits = []
    for _ in range(12):
        n, digit = divmod(n, len(_ALPHABET))
        digits.append(_ALPHABET[digit])
    return "".join(digits)


def _is_domain(name: str) -> bool:
    labels = name.removesuffix(".").split(".")
    return len(name) <= 253 and all(_LABEL.fullmatch(label) for label in labels)


def _is_address_literal(name: str) -> bool:
    if not (name.startswith("[") and name.endswith("]")):
        return False
    inner = name[1:-1]
    ipv6 = inner[:5].lower() == "ipv6:"
    try:
        address = ipaddress.ip_address(inner[5:] if ipv6 else inner)
    except ValueError:
        return False
    return address.version == (6 if ipv6 else 4)


def trace_helo(helo: str) -> str:
    """The client's HELO/EHLO name as ccguard's ``Received:`` header writes it.

    A domain or an address literal is written as it was (an internationalised
    domain in its ASCII form); anything else, like Postfix does, as printable
    ASCII: every other character, and ``( ) ; " \\``, becomes ``?``, and it is
    cut at 100 characters.  So a client cannot write control bytes, a comment
    or a fake ``by ... with ESMTPSA;`` clause into the trace.
    """
    if not helo:
        return "unknown"
    if not helo.isascii() and helo.isprintable():
        with contextlib.suppress(UnicodeError):
            helo = helo.encode("idna").decode("ascii")
    if _is_domain(helo) or _is_address_literal(helo):
        return helo
    return _UNSAFE_HELO.sub("?", helo[:_MAX_HELO])


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
    helo = trace_helo(envelope.client_helo)
    protocol = _protocol(envelope, tls or bool(envelope.tls_version))
    ip = envelope.client_ip
    literal = f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
    text = (
        f"Received: from {helo} ({literal})\r\n"
        f"\tby {hostname} (ccguard) with {protocol} id {envelope.queue_id};\r\n"
        f"\t{format_datetime(now)}\r\n"
    )
    return text.encode("utf-8", "surrogateescape")
