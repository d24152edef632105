"""ccguard's own DATA reader (relay/smtp/data.py) keeps aiosmtpd's rules, byte for byte.

Raw SMTP over a real socket, so the test controls every byte a client sends.
"""

from __future__ import annotations

import asyncio
import socket

from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream

HEAD = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: raw\r\n\r\n"


def talk(port: int, data: bytes, after: bytes = b"QUIT\r\n") -> bytes:
    """EHLO, MAIL, RCPT, DATA, then ``data`` as is, then ``after``; everything the
    server said, once it closed the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"EHLO client.example.org\r\nMAIL FROM:<alice@example.org>\r\n"
            b"RCPT TO:<bob@example.com>\r\n"
        )
        replies = b""
        while replies.count(b"\r\n250 ") < 2 or not replies.endswith(b"\r\n"):
            replies += sock.recv(65536)  # EHLO's last line, then MAIL's and RCPT's
        sock.sendall(b"DATA\r\n")
        while b"354 " not in replies:
            replies += sock.recv(65536)
        sock.sendall(data + after)
        while chunk := sock.recv(65536):
            replies += chunk
    return replies


async def test_only_crlf_dot_crlf_ends_the_message_so_nothing_is_smuggled(
    upstream: RecordingUpstream,
) -> None:
    smuggled = (
        b"text\n.\nMAIL FROM:<evil@example.net>\r\n"
        b"more\r\n.\nRCPT TO:<victim@example.net>\r\n"
        b"last\r.\r\nDATA\r\n"
    )
    async with running_relay(settings_for(upstream.port)) as relay:
        replies = await asyncio.to_thread(talk, relay.smtp_port, HEAD + smuggled + b".\r\n")
    assert [m.mail_from for m in upstream.messages] == ["alice@example.org"]
    # Bare CR/LF become CRLF on the way out and a line's leading dot is removed,
    # as aiosmtpd and aiosmtplib always did: inert text in one message.
    assert upstream.messages[0].data.endswith(
        HEAD + b"text\r\n.\r\nMAIL FROM:<evil@example.net>\r\nmore\r\n"
        b"\r\nRCPT TO:<victim@example.net>\r\nlast\r\n.\r\nDATA\r\n"
    )
    assert upstream.messages[0].rcpt_tos == ["bob@example.com"]
    assert replies.count(b"\r\n250 2.0.0") == 1 and replies.endswith(b"221 Bye\r\n")


async def test_a_leading_dot_is_removed_once(upstream: RecordingUpstream) -> None:
    stuffed = b"..starts with a dot\r\n...two dots\r\n..\r\n.x\r\n"
    async with running_relay(settings_for(upstream.port)) as relay:
        await asyncio.to_thread(talk, relay.smtp_port, HEAD + stuffed + b".\r\n")
    assert upstream.messages[0].data.endswith(
        HEAD + b".starts with a dot\r\n..two dots\r\n.\r\nx\r\n"
    )


async def test_an_over_long_line_then_the_end_is_refused_and_the_session_goes_on(
    upstream: RecordingUpstream,
) -> None:
    long_line = b"y" * 5000 + b"\r\n"
    async with running_relay(settings_for(upstream.port)) as relay:
        replies = await asyncio.to_thread(
            talk, relay.smtp_port, HEAD + long_line + b"z\r\n.\r\n", b"NOOP\r\nQUIT\r\n"
        )
    assert b"\r\n500 5.5.2 Line too long" in replies
    assert replies.endswith(b"250 OK\r\n221 Bye\r\n")
    assert upstream.messages == []
