"""The listener's TLS: the server context, re-read on SIGHUP, and what a session negotiated.

A new :class:`ssl.SSLContext` is built on every (re)load, never a loaded one
changed in place: sessions already encrypted keep the one they handshook with,
new connections get the new one.  STARTTLS sessions pick :attr:`ServerTls.current`
when their protocol object is made; the implicit-TLS listener's socket context
is fixed by ``create_server``, so it hands each handshake the current context
from its SNI callback (called by OpenSSL for every ClientHello, with or
without a server name).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

from relay.errors import ConfigError

__all__ = ["ServerTls", "TlsInfo", "build_context", "handshake_failure", "tls_info"]


def build_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context presenting ``cert``/``key`` (PEM), TLS 1.2 or newer only.

    Raises :class:`ConfigError` naming the files when they cannot be loaded.
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_NONE  # no client certificates asked for
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([("smtp.tls_cert", f"cannot load {cert} / {key}: {exc}")]) from None
    return ctx


class ServerTls:
    """The current server context for ``[smtp] tls_cert`` / ``tls_key``."""

    def __init__(self, cert: str, key: str) -> None:
        self._cert, self._key = cert, key
        self.current = build_context(cert, key)

    def reload(self) -> None:
        """Read the certificate and key again; on error keep the old context and raise.

        Raises :class:`ConfigError` (the caller logs it; nothing is dropped).
        """
        self.current = build_context(self._cert, self._key)

    def listener_context(self) -> ssl.SSLContext:
        """The context for the implicit-TLS socket: every handshake uses :attr:`current`."""
        ctx = build_context(self._cert, self._key)
        ctx.sni_callback = self._pick_current
        return ctx

    def _pick_current(self, sslobj: ssl.SSLObject, _name: str | None, _ctx: Any) -> None:
        sslobj.context = self.current


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """What a session negotiated, e.g. ``("TLSv1.3", "TLS_AES_256_GCM_SHA384")``."""

    version: str
    cipher: str


def tls_info(transport: Any) -> TlsInfo | None:
    """The protocol and cipher of ``transport``'s TLS layer, or ``None`` if in clear."""
    if transport is None:
        return None
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    cipher = sslobj.cipher()
    return TlsInfo(version=sslobj.version() or "", cipher=cipher[0] if cipher else "")


def handshake_failure(error: BaseException) -> tuple[str, str]:
    """Why a client's TLS handshake failed: the metric's reason (``protocol``,
    ``closed``, ``timeout`` or ``other``) and a short detail for the log (OpenSSL's reason,
    e.g. ``UNSUPPORTED_PROTOCOL``, or the exception's type)."""
    cause = error.__cause__ if error.__cause__ is not None else error
    if isinstance(cause, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "closed", cause.reason or type(cause).__name__
    if isinstance(cause, ssl.SSLError):
        return "protocol", cause.reason or type(cause).__name__
    if isinstance(cause, ConnectionAbortedError):  # asyncio's handshake timeout
        return "timeout", type(cause).__name__
    if isinstance(cause, ConnectionError | EOFError):
        return "closed", type(cause).__name__
    return "other", type(cause).__name__
