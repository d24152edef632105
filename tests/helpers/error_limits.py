"""Shared by the error-limit tests (tests/integration/test_relay_error_limits*.py):
the SMTP lines and replies they use, a raw-socket client, a metric reader."""

from __future__ import annotations

import socket

from relay.app import Relay
from tests.helpers.hangup import read_reply

__all__ = [
    "EHLO",
    "MAIL",
    "MESSAGE",
    "NO_SLEEP",
    "NO_SUCH_USER",
    "RCPT_BOB",
    "RCPT_NOBODY",
    "SHUTTING_DOWN",
    "TOO_MANY_ERRORS",
    "metric",
    "talk",
    "until_closed",
]

MESSAGE = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nbody\r\n"
EHLO = b"EHLO client.example.org"
MAIL = b"MAIL FROM:<alice@example.org>"
RCPT_BOB = b"RCPT TO:<bob@example.com>"
RCPT_NOBODY = b"RCPT TO:<nobody@example.com>"
NO_SUCH_USER = "550 5.1.1 No such user"
TOO_MANY_ERRORS = b"421 4.7.0 Too many errors, closing connection\r\n"
SHUTTING_DOWN = b"421 4.3.2 Service shutting down, try again later\r\n"
# Every test but the one about the delay: no error reply waits.
NO_SLEEP = {"soft_error_limit": 0}


def metric(relay: Relay, name: str, **labels: str) -> float:
    return relay.metrics.registry.get_sample_value(name, labels) or 0.0


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server still says, up to its close (the socket timeout bounds it)."""
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass  # closed with input unread: the kernel resets, after what was sent
    return got


def talk(port: int, lines: list[bytes]) -> list[bytes]:
    """Say each line and read its reply; after the last one, all until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        read_reply(sock)
        got = []
        for line in lines[:-1]:
            sock.sendall(line + b"\r\n")
            got.append(read_reply(sock))
        sock.sendall(lines[-1] + b"\r\n")
        got.append(until_closed(sock))
    return got
