"""A TLS client that writes a PROXY header in clear before its ClientHello, as HAProxy does.

:func:`deliver_header_first` runs TLS with an :class:`ssl.SSLObject` over a plain
socket, so the test decides how the header and the ClientHello are cut into TCP
writes; between two writes it waits until ccguard has read every byte sent so far
(the receive queue of ccguard's socket in ``/proc/net/tcp`` is empty), so each
write is a read of its own on ccguard's side.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path

__all__ = ["deliver_header_first", "unread_by_server", "v1", "v2"]

MESSAGE = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: tls\r\n\r\nbody\r\n"
_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(client_ip: str, port: int = 465) -> bytes:
    """A PROXY v1 header naming ``client_ip`` (TCP over IPv4)."""
    return f"PROXY TCP4 {client_ip} 127.0.0.1 40000 {port}\r\n".encode()


def v2(client_ip: str, port: int = 465) -> bytes:
    """A PROXY v2 PROXY-command header naming ``client_ip`` (TCP over IPv4)."""
    addresses = IPv4Address(client_ip).packed + IPv4Address("127.0.0.1").packed
    tail = addresses + struct.pack("!HH", 40000, port)
    return _V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(tail)) + tail


def unread_by_server(server_port: int, client_port: int) -> int | None:
    """Bytes waiting in ccguard's receive queue of this connection (``None``: not found)."""
    want = (f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}")
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if (fields[1], fields[2]) == want:
            return int(fields[4].split(":")[1], 16)
    return None


def _wait_read(sock: socket.socket, timeout: float = 30.0) -> None:
    server_port, client_port = sock.getpeername()[1], sock.getsockname()[1]
    deadline = time.monotonic() + timeout
    while unread_by_server(server_port, client_port) != 0:
        if time.monotonic() > deadline:
            raise AssertionError("ccguard did not read what was sent")
        time.sleep(0.005)  # polling for the event, bounded by the deadline


class _Tls:
    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_hostname="localhost")

    def client_hello(self) -> bytes:
        with contextlib.suppress(ssl.SSLWantReadError):
            self._obj.do_handshake()
        return self._out.read()

    def _pump(self) -> None:
        self.sock.sendall(self._out.read())
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by ccguard")
        self._in.write(data)

    def finish_handshake(self) -> None:
        while True:
            try:
                self._obj.do_handshake()
                self.sock.sendall(self._out.read())
                return
            except ssl.SSLWantReadError:
                self._pump()

    def reply(self) -> bytes:
        got = b""
        while not _complete(got):
            try:
                piece = self._obj.read(65536)
            except ssl.SSLWantReadError:
                self._pump()
                continue
            if not piece:  # TLS closed by ccguard: no reply is coming (never spin)
                raise ConnectionError("closed by ccguard")
            got += piece
        return got

    def send(self, data: bytes) -> None:
        self._obj.write(data)
        self.sock.sendall(self._out.read())


def _complete(reply: bytes) -> bool:
    lines = reply.split(b"\r\n")
    return len(lines) > 1 and len(lines[-2]) >= 4 and lines[-2][3:4] == b" "


def deliver_header_first(
    port: int, context: ssl.SSLContext, writes: Sequence[bytes], *, hello_joined: bool = False
) -> list[bytes]:
    """Send ``writes`` (the header's pieces), then TLS (its ClientHello in the last
    write when ``hello_joined``) and one message; the last line of every reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = _Tls(sock, context)
        hello = tls.client_hello()
        for i, piece in enumerate(writes):
            last = i == len(writes) - 1
            sock.sendall(piece + (hello if last and hello_joined else b""))
            if not last:
                _wait_read(sock)
        if not hello_joined:
            sock.sendall(hello)
        tls.finish_handshake()
        replies = [tls.reply()]
        for line in (b"EHLO client.example.org", b"MAIL FROM:<alice@example.org>",
                     b"RCPT TO:<bob@example.com>", b"DATA"):  # fmt: skip
            tls.send(line + b"\r\n")
            replies.append(tls.reply())
        tls.send(MESSAGE + b".\r\n")
        replies.append(tls.reply())
        tls.send(b"QUIT\r\n")
        replies.append(tls.reply())
    return [r.rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1] for r in replies]
