"""Turning aiosmtplib's responses and exceptions into ccguard replies and errors."""

from __future__ import annotations

import re
import ssl

import aiosmtplib

from relay import codes
from relay.codes import Reply
from relay.errors import UpstreamError, UpstreamPermanentError, UpstreamTransientError

__all__ = [
    "auth_error",
    "error_from_exception",
    "reply_from_response",
    "setup_error",
    "tls_error",
    "transient_reply_for",
]

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
    Failures while setting up STARTTLS or AUTH are classified by :func:`tls_error`
    and :func:`auth_error` instead, which know what step failed.
    """
    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 400:
        return _from_response(exc)
    if isinstance(exc, TimeoutError | aiosmtplib.SMTPTimeoutError):
        return UpstreamTransientError(str(exc), kind="timeout", reply=codes.UPSTREAM_TIMEOUT)
    if isinstance(exc, ssl.SSLError):
        return UpstreamTransientError(str(exc), kind="tls", reply=codes.UPSTREAM_UNAVAILABLE)
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return UpstreamTransientError(str(exc), kind="disconnect", reply=codes.UPSTREAM_UNAVAILABLE)
    if isinstance(exc, aiosmtplib.SMTPConnectError | ConnectionError | OSError):
        return UpstreamTransientError(str(exc), kind="refused", reply=codes.UPSTREAM_UNAVAILABLE)
    return UpstreamTransientError(repr(exc), kind="disconnect", reply=codes.UPSTREAM_UNAVAILABLE)


def setup_error(exc: BaseException) -> UpstreamError:
    """A failure while opening a connection (greeting, EHLO): never permanent.

    A 5xx greeting or EHLO reply says the next hop will not talk to ccguard now,
    nothing about the message, so the client's queue keeps it and retries (as
    Postfix defers by default, ``smtp_skip_5xx_greeting``).  The kind stays
    ``5xx`` for the metric.
    """
    error = error_from_exception(exc)
    if isinstance(error, UpstreamPermanentError):
        return UpstreamTransientError(
            str(error), kind=error.kind, reply=transient_reply_for(error.reply)
        )
    return error


def tls_error(exc: BaseException) -> UpstreamError:
    """A failed STARTTLS (not offered, refused, handshake or certificate check): kind ``tls``."""
    if isinstance(exc, UpstreamError):
        return exc
    return UpstreamTransientError(
        f"STARTTLS failed: {exc}", kind="tls", reply=codes.UPSTREAM_UNAVAILABLE
    )


def auth_error(exc: BaseException) -> UpstreamError:
    """A failed AUTH: kind ``auth``, answered ``451 4.7.0`` so the client's mail stays queued.

    Wrong or unusable credentials are ccguard's own configuration problem, so even
    an upstream 535 must not bounce the client's message.  The upstream's text is
    left out because it may quote the user name (often an address); a timeout or
    disconnect during AUTH is classified as such.
    """
    lost = aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPTimeoutError
    if isinstance(exc, UpstreamError | lost) or not isinstance(exc, aiosmtplib.SMTPException):
        return error_from_exception(exc)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        why = f"upstream answered {exc.code}"
    else:
        why = str(exc)  # aiosmtplib's own words, e.g. AUTH not offered
    return UpstreamTransientError(
        f"authentication failed: {why}", kind="auth", reply=codes.UPSTREAM_AUTH_FAILED
    )
