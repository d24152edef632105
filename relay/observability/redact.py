"""Keyed hashes that stand in for email addresses in logs.

``Redactor(key).address("Alice@example.org")`` gives ``h:`` followed by 16 hex
digits of HMAC-SHA256 over the normalised address (case-folded, domain
IDNA-encoded), so the same person always gets the same token under one key
however the address was typed, lines about them can be correlated, and nobody without
the key can tell who it is.  ``ccguard hash ADDRESS`` prints the token for an
address so an administrator can search the logs for one person.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from typing import Self

import idna

from relay.settings import LoggingSettings

__all__ = ["HASH_PREFIX", "Redactor", "normalise_for_hash"]

HASH_PREFIX = "h:"
HASH_HEX_DIGITS = 16
DEFAULT_LIST_LIMIT = 20

_LOCAL = r"[A-Za-z0-9!#$%'*+^_`{|}~.\-\u0080-\U0010ffff]+"
_LABEL = r"[A-Za-z0-9\-\u0080-\U0010ffff]+"
# Broad on purpose: anything shaped like local@domain.tld, quoted local parts
# and non-ASCII included; a false positive only costs a hashed token.  "/?=&"
# are left out of the local part so a URL query keeps its path and key; "%40"
# is the "@" of a URL-encoded address in a logged request path.
ADDRESS_RE = re.compile(rf"(?:\"[^\"\r\n]*\"|{_LOCAL})(?:@|%40){_LABEL}(?:\.{_LABEL})+")


@functools.lru_cache(maxsize=4096)
def _domain(domain: str) -> str:
    # Cached: IDNA (UTS 46) costs tens of microseconds and the same few domains
    # (the sender's) come back in every transaction line.
    domain = domain.strip().rstrip(".").lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return domain


def normalise_for_hash(addr: str) -> str:
    """``local@domain`` lower-cased, the domain IDNA-encoded, ``<>`` stripped.

    The local part is case-folded too: it is case-insensitive at practically
    every mail system, and an administrator searching the logs for a person
    should not have to guess how their address was capitalised.
    """
    addr = addr.strip()
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1].strip()
    local, at, domain = addr.rpartition("@")
    if not at:
        return addr
    return f"{local.lower()}@{_domain(domain)}"


class Redactor:
    """Turns addresses into keyed hashes; ``ephemeral`` is True for a random key."""

    def __init__(self, key: str | bytes, *, ephemeral: bool = False) -> None:
        raw = key.encode("utf-8") if isinstance(key, str) else key
        if not raw:
            raise ValueError("hash key must not be empty")
        self._key = raw
        self.ephemeral = ephemeral

    @classmethod
    def from_settings(cls, settings: LoggingSettings) -> Self:
        """The configured ``[logging] hash_key``, else a random per-process key.

        With a random key ``ephemeral`` is True: hashes still correlate lines
        within this process but not across restarts or with ``ccguard hash``.
        """
        if settings.hash_key:
            return cls(settings.hash_key)
        return cls(secrets.token_bytes(32), ephemeral=True)

    def address(self, addr: str) -> str:
        """The keyed hash of one address; the null sender ``<>`` stays ``<>``."""
        normal = normalise_for_hash(addr)
        if not normal:
            return "<>"
        digest = hmac.new(self._key, normal.encode("utf-8"), hashlib.sha256).hexdigest()
        return HASH_PREFIX + digest[:HASH_HEX_DIGITS]

    def domain(self, addr: str) -> str:
        """The address's domain, normalised and in clear ("" if it has none)."""
        _, at, domain = addr.strip().strip("<>").rpartition("@")
        return _domain(domain) if at else ""

    def addresses(
        self, addrs: Iterable[str], *, limit: int = DEFAULT_LIST_LIMIT
    ) -> tuple[int, list[str]]:
        """How many addresses there are, and the hashes of the first ``limit`` distinct ones."""
        count = 0
        hashes: list[str] = []
        for addr in addrs:
            count += 1
            token = self.address(addr)
            if len(hashes) < limit and token not in hashes:
                hashes.append(token)
        return count, hashes

    def scrub(self, text: str) -> str:
        """``text`` with every address-looking substring replaced by its hash."""
        if "@" not in text and "%40" not in text:
            return text
        return ADDRESS_RE.sub(lambda m: self.address(m.group(0).replace("%40", "@")), text)
