"""Domain normalisation and the internal/external decision (pure)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache

import idna

__all__ = ["DomainMatcher", "normalise_domain"]

_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def normalise_domain(domain: str) -> str:
    """Lower-case, IDNA (UTS-46) A-label form of ``domain``; never raises.

    ``bücher.example`` and ``XN--BCHER-KVA.example.`` both become
    ``xn--bcher-kva.example``.  Address literals (``[192.0.2.1]``) are only
    stripped of blanks and lower-cased.  A domain the IDNA codec refuses is
    normalised label by label as far as possible instead.
    """
    domain = domain.strip()
    if domain.startswith("["):
        return "".join(domain.split()).lower()
    if domain.isascii():
        return domain.rstrip(".").lower()
    return _normalise_idn(domain)


@lru_cache(maxsize=4096)
def _normalise_idn(domain: str) -> str:
    # Pure memo: the same few non-ASCII domains repeat many times in one header.
    try:
        return idna.encode(domain, uts46=True).decode("ascii").rstrip(".")
    except (idna.IDNAError, UnicodeError, ValueError):
        labels = domain.translate(_DOTS).rstrip(".").split(".")
        return ".".join(_fallback_label(label) for label in labels)


def _fallback_label(label: str) -> str:
    """Best effort for a label the IDNA codec refuses (e.g. ``bü_cher``)."""
    if label.isascii():
        return label.lower()
    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        pass
    try:
        mapped = idna.uts46_remap(label, std3_rules=False, transitional=False)
    except (idna.IDNAError, UnicodeError, ValueError):
        mapped = unicodedata.normalize("NFC", label.casefold())
    if mapped.isascii():
        return mapped.lower()
    try:
        return "xn--" + mapped.encode("punycode").decode("ascii")
    except UnicodeError:
        return mapped


class DomainMatcher:
    """Decides whether a domain is one of the organisation's own.

    ``patterns`` are exact domains (``example.org``) or ``*.example.org``,
    which matches every subdomain of example.org but not example.org itself
    (list it too if it is yours) and never ``badexample.org``.
    """

    __slots__ = ("_exact", "_wildcard")

    def __init__(self, patterns: Iterable[str]) -> None:
        exact: set[str] = set()
        wildcard: set[str] = set()
        for pattern in patterns:
            if pattern.startswith("*."):
                wildcard.add(normalise_domain(pattern[2:]))
            else:
                exact.add(normalise_domain(pattern))
        self._exact = frozenset(exact)
        self._wildcard = frozenset(wildcard)

    def is_internal(self, domain: str) -> bool:
        """True if ``domain`` (any case, Unicode or A-label) is internal."""
        norm = normalise_domain(domain)
        if not norm:
            return False
        if norm in self._exact:
            return True
        if not self._wildcard or norm.startswith("["):
            return False
        rest = norm
        while "." in rest:
            rest = rest.split(".", 1)[1]
            if rest in self._wildcard:
                return True
        return False

    def is_internal_address(self, addr: str) -> bool:
        """True if the domain of ``addr`` is internal; no ``@`` means external."""
        local, at, domain = addr.rpartition("@")
        if not at or not local:
            return False
        return self.is_internal(domain)
