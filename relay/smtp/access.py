"""Which clients may relay through ccguard: by network, by SMTP AUTH, and with which senders."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from relay import codes
from relay.codes import Reply
from relay.policy.patterns import AddressPatterns
from relay.settings import SmtpSettings

__all__ = ["NetworkAccess", "RelayAccess", "SenderBinding"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class NetworkAccess:
    """Client IP allow-list built from ``[smtp] allowed_networks``."""

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks: list[IPNetwork] = [ipaddress.ip_network(n, strict=False) for n in networks]

    def allows(self, ip: str) -> bool:
        """True when ``ip`` (IPv4, IPv6 or IPv4-mapped IPv6) is in an allowed network."""
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == net.version and addr in net for net in self._networks)


class SenderBinding:
    """``[smtp.auth] sender_patterns``: the MAIL FROM addresses each user may use.

    A user's own entry applies, else the ``"*"`` entry, else nothing is allowed.
    An empty table binds nobody (every authenticated user may use any sender).
    Patterns are those of policy rules: ``a@example.org``, ``*@example.org``,
    ``*@*.example.org``, ``<>`` (null sender), ``*``.
    """

    def __init__(self, patterns: Mapping[str, Iterable[str]]) -> None:
        self._by_user = {user: AddressPatterns(p) for user, p in patterns.items()}

    def allows(self, user: str, mail_from: str) -> bool:
        """True when ``user`` may send as ``mail_from`` (``""`` or ``<>``: the null sender)."""
        if not self._by_user:
            return True
        patterns = self._by_user.get(user) or self._by_user.get("*")
        return patterns is not None and patterns.matches(mail_from)


class RelayAccess:
    """A client may relay when its address is allowed OR it has authenticated.

    Without ``[smtp.auth] users_file`` nobody can authenticate, so a client
    outside ``allowed_networks`` is refused at connect as before; with it, the
    refusal waits for MAIL (``530 5.7.0``) so the client can AUTH first.
    ``[smtp.auth] required`` is enforced by aiosmtpd's ``auth_required``.
    """

    def __init__(self, settings: SmtpSettings) -> None:
        self.networks = NetworkAccess(settings.allowed_networks)
        self.auth_enabled = settings.auth.users_file is not None
        self.auth_required = settings.auth.required
        self.senders = SenderBinding(settings.auth.sender_patterns)

    def allows(self, ip: str) -> bool:
        """True when ``ip`` is in ``allowed_networks``."""
        return self.networks.allows(ip)

    def refused_at_connect(self, ip: str) -> bool:
        """True when the client is to be refused before the greeting."""
        return not self.auth_enabled and not self.networks.allows(ip)

    def mail_refusal(self, ip: str, auth_user: str | None, mail_from: str) -> Reply | None:
        """The reply refusing MAIL FROM ``mail_from``, or ``None`` when it may go on."""
        if auth_user is None:
            if self.auth_required or not self.networks.allows(ip):
                return codes.AUTH_REQUIRED
            return None
        if not self.senders.allows(auth_user, mail_from):
            return codes.SENDER_NOT_OWNED
        return None
