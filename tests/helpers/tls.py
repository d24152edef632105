"""Test PKI made with the ``openssl`` command line, and an upstream that offers STARTTLS/AUTH.

:func:`make_pki` writes a private CA and server certificates signed by it into a
folder.  :class:`TlsUpstream` is a real aiosmtpd server on 127.0.0.1 that records,
for each message it accepted, whether the session was encrypted and who logged in.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.helpers.upstream import Received, RecordingUpstream, _Handler, serve_loopback

__all__ = ["Pki", "TlsUpstream", "make_pki", "server_context"]


@dataclass(frozen=True)
class Pki:
    """Files of the test PKI: the CA, and ``(cert, key)`` pairs signed by it."""

    ca_cert: Path
    localhost: tuple[Path, Path]  # DNS:localhost, IP:127.0.0.1
    other_name: tuple[Path, Path]  # DNS:mail.example.net only


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _server_cert(folder: Path, ca: tuple[Path, Path], name: str, san: str) -> tuple[Path, Path]:
    key, csr, cert, ext = (folder / f"{name}.{s}" for s in ("key", "csr", "pem", "ext"))
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
             "-out", csr, "-subj", f"/CN={name}")  # fmt: skip
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-days", "2", "-sha256", "-extfile", ext, "-out", cert)  # fmt: skip
    return cert, key


def make_pki(folder: Path) -> Pki:
    """A fresh CA and two server certificates it signed, written into ``folder``."""
    ca_cert, ca_key = folder / "ca.pem", folder / "ca.key"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key,
             "-out", ca_cert, "-days", "2", "-subj", "/CN=ccguard test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    ca = (ca_cert, ca_key)
    return Pki(
        ca_cert=ca_cert,
        localhost=_server_cert(folder, ca, "localhost", "DNS:localhost,IP:127.0.0.1"),
        other_name=_server_cert(folder, ca, "other", "DNS:mail.example.net"),
    )


def server_context(cert: tuple[Path, Path]) -> ssl.SSLContext:
    """A server-side TLS context presenting ``cert``."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


@dataclass
class Delivered:
    """One accepted message, with how its session looked to the upstream."""

    received: Received
    encrypted: bool
    auth_user: str | None


@dataclass
class TlsUpstream(RecordingUpstream):
    """A :class:`RecordingUpstream` that may offer STARTTLS and demand AUTH.

    ``tls`` is the server certificate (``None``: no STARTTLS offered);
    ``users`` maps user name to password (empty: no AUTH offered).  With users
    set, MAIL is refused until the client logged in (only possible after STARTTLS);
    ``exclude_auth`` hides mechanisms (e.g. ``["PLAIN"]`` to force LOGIN).
    """

    tls: tuple[Path, Path] | None = None
    users: dict[str, str] = field(default_factory=dict)
    exclude_auth: list[str] = field(default_factory=list)
    delivered: list[Delivered] = field(default_factory=list)
    auth_attempts: list[tuple[str, bool]] = field(default_factory=list)

    async def start(self, port: int = 0) -> TlsUpstream:
        loop = asyncio.get_running_loop()
        ctx = server_context(self.tls) if self.tls else None

        def factory() -> SMTP:
            self.connections += 1
            return SMTP(
                _TlsHandler(self),
                hostname="upstream.test",
                tls_context=ctx,
                require_starttls=False,
                authenticator=self._authenticate if self.users else None,
                auth_required=bool(self.users),
                auth_require_tls=True,
                auth_exclude_mechanism=self.exclude_auth,
                loop=loop,
            )

        self._server, self.port = await serve_loopback(factory, port)
        return self

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        user, password = auth_data.login.decode(), auth_data.password.decode()
        ok = self.users.get(user) == password
        self.auth_attempts.append((user, ok))
        # handled=False: aiosmtpd answers the failure itself (535 5.7.8).
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)


class _TlsHandler(_Handler):
    up: TlsUpstream

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        before = len(self.up.messages)
        reply = await super().handle_DATA(server, session, envelope)
        if len(self.up.messages) > before:
            self.up.delivered.append(
                Delivered(self.up.messages[-1], session.ssl is not None, session.auth_data)
            )
        return reply
