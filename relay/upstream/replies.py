"""Turning aiosmtplib's responses and exceptions into ccguard replies and errors."""

from __future__ import annotations

import re
import ssl

import aiosmtplib

from relay import codes
from relay.codes import Reply
from relay.errors import UpstreamError, UpstreamPermanentError, UpstreamTransientError

__all__ = ["error_from_exception", "reply_from_response", "transient_reply_for"]

_STATUS = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\s*")


def reply_from_response(code: int, message: str) -> Reply:
    """A :class:`Reply` from an upstream ``code`` and text, splitting off its enhanced status."""
    first_line = message.splitlines()[0] if message else ""
    match = _STATUS.match(first_line)
    if match:
        return Reply(code, match.group(1), first_line[match.end() :])
    return Reply(code, f"{str(code)[0]}.0.0", first_line)


def transient_reply_for(upstream: Reply) -> Reply:
    """What the client gets when the upstream deferred: always ``451 4.4.0``, with its words."""
    return codes.UPSTREAM_TEMPFAIL.with_text(
        f"{codes.UPSTREAM_TEMPFAIL.text} (upstream said: {upstream.code} {upstream.text})"
    )


def _from_response(exc: aiosmtplib.SMTPResponseException) -> UpstreamError:
    reply = reply_from_response(exc.code, exc.message)
    if reply.is_permanent:
        return UpstreamPermanentError(str(reply), kind="5xx", reply=reply)
    return UpstreamTransientError(str(reply), kind="4xx", reply=transient_reply_for(reply))


def error_from_exception(exc: BaseException) -> UpstreamError:
    """Classify anything aiosmtplib (or the socket) raised as an :class:`UpstreamError`.

    Refused connections, timeouts, disconnects and TLS failures are transient
    (the client's queue retries); an upstream 5xx is permanent and keeps its reply.
    """
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 400:
        return _from_response(exc)
    if isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        return UpstreamTransientError(str(exc), kind="timeout", reply=codes.UPSTREAM_TIMEOUT)
    if isinstance(exc, ssl.SSLError) or "STARTTLS" in str(exc) or "TLS" in str(exc):
        return UpstreamTransientError(str(exc), kind="tls", reply=codes.UPSTREAM_UNAVAILABLE)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return UpstreamTransientError(str(exc), kind="disconnect", reply=codes.UPSTREAM_UNAVAILABLE)
    if isinstance(exc, aiosmtplib.SMTPConnectError | ConnectionError | OSError):
        return UpstreamTransientError(str(exc), kind="refused", reply=codes.UPSTREAM_UNAVAILABLE)
    return UpstreamTransientError(repr(exc), kind="disconnect", reply=codes.UPSTREAM_UNAVAILABLE)
