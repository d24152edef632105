"""A users file (admin and SMTP AUTH users): names with scrypt hashes, never plain text.

The file is JSON (``{"version": 1, "users": {"alice": "scrypt$16384$8$1$<salt>$<hash>"}}``),
written atomically with mode 0600.  The server re-reads it when its mtime
changes, so ``ccguard admin add-user`` (or ``ccguard smtp-user add``) takes
effect without a restart.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from pathlib import Path

from relay.errors import CCGuardError

__all__ = ["USERNAME_PATTERN", "UserDB", "UsersFileError", "hash_password", "verify_password"]

USERNAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_N, _R, _P, _DKLEN = 2**14, 8, 1, 32
_MAXMEM = 64 * 1024 * 1024


class UsersFileError(CCGuardError):
    """The users file cannot be read, parsed or written, or a name is invalid."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` for ``password`` with a fresh 16-byte salt."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=_DKLEN, maxmem=_MAXMEM
    )
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches the ``scrypt$...`` hash (constant-time compare)."""
    try:
        scheme, n, r, p, salt_b64, hash_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
        digest = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=_MAXMEM,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, expected)


# Verified against when the name is unknown, so that an unknown name costs as
# much time as a wrong password and response times give nothing away.
_DUMMY_HASH = hash_password("not a password", salt=b"\0" * 16)


class UserDB:
    """The users file at ``path``; reloads itself when the file changes on disk."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._users: dict[str, str] = {}
        self._stamp: tuple[int, int] | None = None
        self.reload()

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UsersFileError(f"{self.path}: cannot read: {exc.strerror}") from None
        return (st.st_mtime_ns, st.st_size)

    def reload(self) -> None:
        """Read the file again (a missing file means no users)."""
        stamp = self._file_stamp()
        self._users = {} if stamp is None else self._parse(self.path)
        self._stamp = stamp

    def _refresh(self) -> None:
        if self._file_stamp() != self._stamp:
            self.reload()

    @staticmethod
    def _parse(path: Path) -> dict[str, str]:
        try:
            data = json.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise UsersFileError(f"{path}: cannot read: {exc.strerror}") from None
        except ValueError as exc:
            raise UsersFileError(f"{path}: not valid JSON: {exc}") from None
        users = data.get("users") if isinstance(data, dict) else None
        if not isinstance(users, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in users.items()
        ):
            raise UsersFileError(f'{path}: expected {{"users": {{"name": "scrypt$..."}}}}')
        return dict(users)

    def names(self) -> list[str]:
        """Every user name, sorted."""
        self._refresh()
        return sorted(self._users)

    def exists(self, name: str) -> bool:
        """True when ``name`` is a user."""
        self._refresh()
        return name in self._users

    def record(self, name: str) -> str | None:
        """The stored password record of ``name`` (changes with every password set), or None."""
        self._refresh()
        return self._users.get(name)

    def verify(self, name: str, password: str) -> bool:
        """True when ``name`` exists and ``password`` is right; same cost either way.

        Blocking (scrypt takes tens of milliseconds): call it in a thread from async code.
        """
        self._refresh()
        encoded = self._users.get(name)
        ok = verify_password(password, encoded if encoded is not None else _DUMMY_HASH)
        return ok and encoded is not None

    def set_password(self, name: str, password: str) -> bool:
        """Add ``name`` or change its password and save; True when the user is new."""
        if not USERNAME_PATTERN.match(name):
            raise UsersFileError(
                f"invalid user name {name!r}: use 1-64 letters, digits and . _ @ -"
            )
        if not password:
            raise UsersFileError("the password must not be empty")
        self.reload()
        new = name not in self._users
        self._users[name] = hash_password(password)
        self._save()
        return new

    def remove(self, name: str) -> bool:
        """Remove ``name`` and save; False when there was no such user."""
        self.reload()
        if self._users.pop(name, None) is None:
            return False
        self._save()
        return True

    def _save(self) -> None:
        body = json.dumps({"version": 1, "users": self._users}, indent=2, sort_keys=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".users-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(body + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise UsersFileError(f"{self.path}: cannot write: {exc.strerror}") from None
        self._stamp = self._file_stamp()
