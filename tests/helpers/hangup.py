"""Clients that hang up: a TCP reset (RST) or a plain close (FIN) at a chosen moment."""

from __future__ import annotations

import socket
import struct
import threading

__all__ = ["hang_up", "read_reply", "reset", "talk_up_to"]


def read_reply(sock: socket.socket) -> bytes:
    """One whole (possibly multi-line) SMTP reply."""
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"connection closed after {data!r}")
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and any(len(line) > 3 and line[3:4] == b" " for line in lines[:-1]):
            return data


def talk_up_to(port: int, lines: list[bytes], last: bytes = b"") -> socket.socket:
    """A connection that said ``lines`` (reading each reply) and sent ``last`` unanswered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        read_reply(sock)
        for line in lines:
            sock.sendall(line + b"\r\n")
            read_reply(sock)
        if last:
            sock.sendall(last)
    except BaseException:
        sock.close()
        raise
    return sock


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN (never blocks)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def hang_up(
    port: int,
    lines: list[bytes],
    last: bytes = b"",
    *,
    after: threading.Event | None = None,
    rst: bool = True,
) -> None:
    """Say ``lines``, send ``last``, wait for ``after`` (e.g. the upstream has got
    the command), then reset the connection (``rst``) or close it normally (FIN)."""
    sock = talk_up_to(port, lines, last)
    try:
        if after is not None and not after.wait(10):
            raise AssertionError("the upstream never got that far")
    finally:
        reset(sock) if rst else sock.close()
