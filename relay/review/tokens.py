"""The signed links of sender self-service.

A token is ``<message id>.<expiry>.<nonce>.<mac>``: the MAC is HMAC-SHA256,
with the key of ``[review] token_key_file``, over the message id, the
envelope sender (case-folded) the message was held with, the expiry and the
nonce.  The sender's address is bound but not written into the link, so the
link shows nothing and works only for the message it was made for.  Single
use is the store's job (:meth:`QuarantineStore.use_token` on the nonce).

Checking never says why a link is bad beyond "not valid" / "expired": a
forged link, another message's id and a wrong key all look alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ParsedToken", "TokenRefused", "TokenSigner"]

_CONTEXT = b"ccguard-review-v1"


class TokenRefused(Exception):
    """The link cannot be used; ``reason`` is one of ``malformed``, ``forged``
    (bad MAC, another message, wrong key, or an unknown message), ``expired``, ``used``."""

    def __init__(self, reason: str, message_id: str = "-") -> None:
        super().__init__(reason)
        self.reason = reason
        self.message_id = message_id


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """The parts of a token, not yet checked."""

    message_id: str
    expires: int
    nonce: str
    mac: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenSigner:
    """Makes and checks self-service tokens with one key."""

    def __init__(
        self, key: str | bytes, ttl: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = key.encode() if isinstance(key, str) else key
        self.ttl = ttl
        self._clock = clock

    def _mac(self, message_id: str, mail_from: str, expires: int, nonce: str) -> str:
        text = b"\0".join(
            (
                _CONTEXT,
                message_id.encode(),
                mail_from.casefold().encode(),
                b"%d" % expires,
                nonce.encode(),
            )
        )
        return _b64(hmac.new(self._key, text, hashlib.sha256).digest())

    def make(self, message_id: str, mail_from: str) -> str:
        """A fresh token for ``message_id`` held from ``mail_from``, valid for ``ttl``."""
        expires = int(self._clock() + self.ttl)
        nonce = _b64(secrets.token_bytes(12))
        return f"{message_id}.{expires}.{nonce}.{self._mac(message_id, mail_from, expires, nonce)}"

    @staticmethod
    def parse(token: str) -> ParsedToken:
        """Split a token; raise TokenRefused("malformed") if it is not one."""
        parts = token.split(".")
        # ASCII only: compare_digest refuses non-ASCII text, and str.isdigit takes any script.
        if len(parts) != 4 or not token.isascii() or not parts[1].isdigit() or len(token) > 200:
            raise TokenRefused("malformed")
        message_id, expires, nonce, mac = parts
        if not message_id.isalnum() or not nonce or not mac:
            raise TokenRefused("malformed")
        return ParsedToken(message_id, int(expires), nonce, mac)

    def check(self, token: ParsedToken, mail_from: str | None) -> None:
        """Raise TokenRefused unless ``token`` was made by this key for this message
        and sender (``mail_from`` None: no such message) and has not expired."""
        expected = self._mac(token.message_id, mail_from or "", token.expires, token.nonce)
        if mail_from is None or not hmac.compare_digest(expected, token.mac):
            raise TokenRefused("forged", token.message_id)
        if self._clock() >= token.expires:
            raise TokenRefused("expired", token.message_id)
