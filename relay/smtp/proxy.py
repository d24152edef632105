"""PROXY protocol (v1/v2, HAProxy ``send-proxy``/``send-proxy-v2``) in front of ccguard.

aiosmtpd reads and parses the header (``proxy_protocol_timeout``); this module
decides whom to believe: only a peer in ``[smtp] proxy_trusted`` may send one,
and the client address it names replaces the peer's everywhere (access check,
limits, logs, ``Received:``, quarantine record).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiosmtpd.proxy_protocol import AF, V2_CMD, ProxyData

from relay.smtp.access import NetworkAccess

__all__ = ["ProxyGate"]


class ProxyGate:
    """Which peers may send a PROXY header, and the client address a header gives."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self._trusted = NetworkAccess(trusted)

    def trusts(self, peer_ip: str) -> bool:
        """True when ``peer_ip`` is one of the load balancers of ``proxy_trusted``."""
        return self._trusted.allows(peer_ip)

    @staticmethod
    def speaks_for_itself(data: ProxyData) -> bool:
        """True for a v2 ``LOCAL`` header (HAProxy's own health checks) or a v1
        ``UNKNOWN`` one: they name no client, the proxy itself is talking."""
        return data.valid and (data.command == V2_CMD.LOCAL or data.family == AF.UNSPEC)

    @staticmethod
    def client_ip(data: ProxyData, peer_ip: str) -> str | None:
        """The real client's IP from a parsed header, or ``None`` when it gives none usable.

        For a header that names no client (:meth:`speaks_for_itself`) the
        protocol says to use the connection's own addresses: the proxy's.
        """
        if not data.valid:
            return None
        if ProxyGate.speaks_for_itself(data):
            return peer_ip
        src = data.src_addr
        if not isinstance(src, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return None  # AF_UNIX: no address to check or to log
        if isinstance(src, ipaddress.IPv6Address) and src.ipv4_mapped is not None:
            return str(src.ipv4_mapped)
        return str(src)
