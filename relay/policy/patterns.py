"""Sender and recipient patterns used by policy rules (pure)."""

from __future__ import annotations

from collections.abc import Iterable

from relay.inspect.addresses import normalise_address
from relay.inspect.domains import normalise_domain

__all__ = ["AddressPatterns"]

NULL_SENDER = "<>"


class AddressPatterns:
    """A set of address patterns, matched case-insensitively on the domain.

    ``user@example.org`` matches that address (local part as written),
    ``*@example.org`` every address at example.org, ``*@*.example.org`` every
    address at a subdomain of example.org, ``*`` everyone and ``<>`` the null
    sender.
    """

    __slots__ = ("_any", "_domains", "_exact", "_null", "_subdomains")

    def __init__(self, patterns: Iterable[str]) -> None:
        self._exact: set[str] = set()
        self._domains: set[str] = set()
        self._subdomains: set[str] = set()
        self._any = self._null = False
        for raw in patterns:
            self._add(raw.strip())

    def _add(self, pattern: str) -> None:
        if pattern == "*":
            self._any = True
        elif pattern == NULL_SENDER:
            self._null = True
        elif pattern.startswith("*@*."):
            self._subdomains.add(normalise_domain(pattern[4:]))
        elif pattern.startswith("*@"):
            self._domains.add(normalise_domain(pattern[2:]))
        else:
            self._exact.add(normalise_address(pattern.strip("<>")))

    def __bool__(self) -> bool:
        return bool(self._any or self._null or self._exact or self._domains or self._subdomains)

    def matches(self, address: str) -> bool:
        """True if ``address`` (``""`` for the null sender) matches a pattern."""
        if not address or address == NULL_SENDER:
            return self._null or self._any
        if self._any:
            return True
        norm = normalise_address(address.strip("<>"))
        if norm in self._exact:
            return True
        domain = norm.rpartition("@")[2]
        if domain in self._domains:
            return True
        while "." in domain and self._subdomains:
            domain = domain.split(".", 1)[1]
            if domain in self._subdomains:
                return True
        return False
