"""The PROXY header in clear before the TLS handshake, on the implicit-TLS listener.

A load balancer (HAProxy ``send-proxy``/``send-proxy-v2``) writes the header
first and then passes the client's bytes on, the ClientHello first: Postfix
with ``smtpd_upstream_proxy_protocol`` and ``smtpd_tls_wrappermode`` reads it
the same way.  So the accept loop asks :class:`ProxyFirst` before it starts
TLS: the peer must be trusted, the header's bytes are read from the raw socket
(not one byte past its end: the ClientHello follows) within ``proxy_timeout``
and parsed by aiosmtpd's own parser; the session then admits the client the
header names as on the plain listener.  Everything refused here is closed
without a TLS handshake, logged and counted as the plain listener does.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from functools import partial

from aiosmtpd.proxy_protocol import V2_SIGNATURE, ProxyData, get_proxy

from relay.smtp.context import FrontContext
from relay.smtp.proxy import ProxyGate
from relay.smtp.shared_listen import Opened

__all__ = ["ProxyFirst", "parse_header", "proxy_refused", "read_header"]

_V1_MAX = 107  # the longest v1 line the protocol allows, CRLF included
_V2_FIXED = 16  # signature (12), version/command, family/protocol, length (2)


def proxy_refused(ctx: FrontContext, peer_ip: str, reason: str) -> None:
    """Log and count one connection closed for its PROXY header (or for its peer)."""
    ctx.door.warning("proxy header refused", reason, peer_ip=peer_ip)
    if ctx.metrics is not None:
        ctx.metrics.proxy_header_failure(reason)
    ctx.refused("proxy")


async def read_header(sock: socket.socket) -> bytes:
    """The bytes of one PROXY v1/v2 header from the non-blocking ``sock``, and no more.

    Bytes that are no PROXY signature come back as read (the first five): the
    parser says what is wrong.  Raises :class:`EOFError` when the peer closes first.
    """
    loop = asyncio.get_running_loop()
    head = await _exactly(loop, sock, b"", 5)
    if head == b"PROXY":
        return await _v1_line(loop, sock, head)
    if head != V2_SIGNATURE[:5]:
        return head
    head = await _exactly(loop, sock, head, _V2_FIXED)
    if head[: len(V2_SIGNATURE)] != V2_SIGNATURE:
        return head  # no v2 header: its length field means nothing, do not wait for it
    (length,) = struct.unpack_from("!H", head, _V2_FIXED - 2)
    return await _exactly(loop, sock, head, _V2_FIXED + length)


async def _exactly(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, got: bytes, size: int
) -> bytes:
    while len(got) < size:
        chunk = await loop.sock_recv(sock, size - len(got))
        if not chunk:
            raise EOFError
        got += chunk
    return got


async def _v1_line(loop: asyncio.AbstractEventLoop, sock: socket.socket, got: bytes) -> bytes:
    # The line's length is known only at its LF: look at what came (MSG_PEEK)
    # and take it up to the LF, or all of it (it is all header) and wait for more.
    while len(got) < _V1_MAX:
        await _readable(loop, sock)
        try:
            seen = sock.recv(_V1_MAX - len(got), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            continue
        if not seen:
            raise EOFError
        end = seen.find(b"\n")
        got += sock.recv(len(seen) if end < 0 else end + 1)
        if end >= 0:
            break
    return got


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    fd = sock.fileno()
    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def parse_header(raw: bytes) -> ProxyData:
    """``raw`` parsed by aiosmtpd's PROXY parser (invalid when truncated)."""
    reader = asyncio.StreamReader()
    reader.feed_data(raw)
    reader.feed_eof()
    try:
        return await get_proxy(reader)
    except asyncio.IncompleteReadError:
        return ProxyData(version=None).with_error("PROXY header truncated")


class ProxyFirst:
    """The accept loop's step before TLS when ``proxy_protocol`` is on
    (a :data:`relay.smtp.shared_listen.Preface`)."""

    def __init__(
        self, ctx: FrontContext, gate: ProxyGate, session: Callable[[ProxyData], asyncio.Protocol]
    ) -> None:
        self._ctx, self._gate, self._session = ctx, gate, session

    async def __call__(self, conn: socket.socket, peer_ip: str) -> Opened | None:
        """How to open the connection, or ``None`` (refused: close it, no handshake)."""
        header = await self._read(conn, peer_ip)
        client_ip = ProxyGate.client_ip(header, peer_ip) if not isinstance(header, str) else None
        if isinstance(header, str) or client_ip is None:
            proxy_refused(self._ctx, peer_ip, header if isinstance(header, str) else "no_address")
            return None
        return Opened(
            partial(self._session, header),
            health_check=ProxyGate.speaks_for_itself(header),
            client_ip=client_ip,
        )

    async def _read(self, conn: socket.socket, peer_ip: str) -> ProxyData | str:
        """The valid header, or why the connection is refused."""
        if not self._gate.trusts(peer_ip):
            return "untrusted_peer"
        try:
            async with asyncio.timeout(self._ctx.settings.proxy_timeout):
                raw = await read_header(conn)
        except TimeoutError:
            return "timeout"
        except (EOFError, ConnectionError):
            return "invalid"  # gone before a whole header
        data = await parse_header(raw)
        return data if data.valid else "invalid"
