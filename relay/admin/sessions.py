"""Signed session cookies carrying the user name and the CSRF token.

The cookie is ``base64url(JSON payload) "." base64url(HMAC-SHA256)``; nothing
in it is secret (the user name, a session id, the CSRF token, the issue time,
a keyed fingerprint of the user's password record) but none of it can be
forged without the key.  A session without ``user`` is the anonymous one the
login form gets, so the login form has a CSRF token too.

The fingerprint (:meth:`SessionCodec.fingerprint`) changes whenever the
user's password is set again (new salt), so a password change or removal
ends every session of that user; the admin context checks it on every
request.  Logout revocations are kept here in memory and, by the admin
context, in the store's audit table, so they outlive a restart.  Without
``[admin] session_secret`` the key is random per process: every session then
ends when ccguard restarts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relay.errors import ConfigError

__all__ = ["COOKIE_NAME", "Session", "SessionCodec", "load_session_key"]

COOKIE_NAME = "ccguard_session"


@dataclass(frozen=True, slots=True)
class Session:
    """One browser session; ``user`` is None before login."""

    sid: str
    csrf: str
    issued_at: float
    user: str | None = None
    stamp: str = ""

    @classmethod
    def new(cls, user: str | None, now: float, stamp: str = "") -> Session:
        """A fresh session with new random id and CSRF token; ``stamp`` is the
        user's :meth:`SessionCodec.fingerprint` at login."""
        return cls(secrets.token_urlsafe(16), secrets.token_urlsafe(32), now, user, stamp)

    @property
    def revocation_target(self) -> str:
        """The audit target recording this session's logout (a hash, not the id)."""
        return "session:" + hashlib.sha256(self.sid.encode("ascii")).hexdigest()[:24]

    def csrf_ok(self, token: str | None) -> bool:
        """Constant-time check of a submitted CSRF token."""
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


def load_session_key(path: str | os.PathLike[str], setting: str = "admin.session_key_file") -> str:
    """The session key in ``path``, created (random, mode 0600) if the file does not exist.

    Instances sharing the file sign and accept the same cookies.  Creation is
    atomic (written aside, then hard-linked into place), so instances started
    together agree on one key: whoever links first wins, the others read it.
    """
    target = Path(path).expanduser()
    try:
        if not target.exists():
            _create_key_file(target)
        key = target.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeError) as exc:
        raise ConfigError([(setting, f"cannot use {target}: {exc}")]) from None
    if len(key) < 32:
        raise ConfigError([(setting, f"{target} holds fewer than 32 characters")])
    return key


def _create_key_file(target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    aside = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.write(fd, (secrets.token_urlsafe(48) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(aside, target)
    except FileExistsError:
        pass  # another instance created it first: use theirs
    finally:
        os.unlink(aside)


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """Encodes, verifies and revokes sessions with one HMAC key."""

    def __init__(
        self,
        secret: str | None,
        max_age: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        raw = secret.encode("utf-8") if secret else secrets.token_bytes(32)
        self._key = hashlib.sha256(b"ccguard-session\0" + raw).digest()
        self.max_age = max_age
        self._clock = clock
        self._revoked: dict[str, float] = {}

    def now(self) -> float:
        """The codec's clock (epoch seconds)."""
        return self._clock()

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()

    def encode(self, session: Session) -> str:
        """The cookie value for ``session``."""
        payload = {
            "s": session.sid,
            "c": session.csrf,
            "t": session.issued_at,
            "u": session.user,
            "p": session.stamp,
        }
        body = _b64e(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
        return body + "." + _b64e(self._sign(body.encode("ascii")))

    def decode(self, value: str | None) -> Session | None:
        """The session in a cookie value, or None if missing, forged, expired or revoked."""
        if not value or value.count(".") != 1:
            return None
        body, sig = value.split(".")
        try:
            if not hmac.compare_digest(_b64d(sig), self._sign(body.encode("ascii"))):
                return None
            data = json.loads(_b64d(body))
            session = Session(
                str(data["s"]), str(data["c"]), float(data["t"]), data["u"], str(data["p"])
            )
        except (binascii.Error, ValueError, UnicodeError, KeyError, TypeError):
            return None
        if session.user is not None and not isinstance(session.user, str):
            return None
        age = self.now() - session.issued_at
        if not 0 <= age <= self.max_age or self.is_revoked(session):
            return None
        return session

    def fingerprint(self, user: str, record: str) -> str:
        """A keyed digest of ``user``'s stored password record: it changes with the password."""
        digest = hmac.new(self._key, f"record\0{user}\0{record}".encode(), hashlib.sha256)
        return _b64e(digest.digest()[:12])

    def is_revoked(self, session: Session) -> bool:
        """True when ``session`` was revoked by this process."""
        return session.sid in self._revoked

    def revoke(self, session: Session) -> None:
        """End ``session`` now (logout), even though its cookie is still validly signed."""
        now = self.now()
        self._revoked = {sid: until for sid, until in self._revoked.items() if until > now}
        self._revoked[session.sid] = session.issued_at + self.max_age
