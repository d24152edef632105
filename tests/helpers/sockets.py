"""Raw TCP clients on loopback: one that is refused or not, silent ones, one that says
something and reads until the server closes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

__all__ = ["closed_by_server", "closed_now", "closed_unanswered", "refused", "silent_clients"]


def refused(port: int) -> bool:
    """True if a new connection is refused; one that was taken is closed again."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


@contextmanager
def silent_clients(port: int, count: int, first: bytes = b"") -> Iterator[list[socket.socket]]:
    """``count`` connections that send ``first`` (maybe nothing) and then say nothing."""
    with ExitStack() as stack:
        socks = []
        for _ in range(count):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=20))
            if first:
                sock.sendall(first)
            socks.append(sock)
        yield socks


def closed_by_server(sock: socket.socket) -> bool:
    """Wait (bounded by the socket's timeout) until the server closes the connection."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def closed_now(socks: list[socket.socket]) -> int:
    """How many of ``socks`` the server has closed by now (a look, no wait)."""
    closed = 0
    for sock in socks:
        timeout = sock.gettimeout()
        sock.setblocking(False)  # a socket with a timeout would wait out EAGAIN
        try:
            closed += sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            pass
        except ConnectionResetError:
            closed += 1
        finally:
            sock.settimeout(timeout)
    return closed


def closed_unanswered(port: int, first: bytes, *, leave: bool = False) -> bytes:
    """Send ``first`` (then half-close when ``leave``); what came back before the close."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        if first:
            sock.sendall(first)
        if leave:
            sock.shutdown(socket.SHUT_WR)
        got = b""
        try:
            while chunk := sock.recv(4096):
                got += chunk
        except ConnectionResetError:
            pass  # closed with our bytes unread: a reset instead of an end of file
        return got
