"""Which clients may relay through ccguard."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["NetworkAccess"]

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
