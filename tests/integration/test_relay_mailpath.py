"""MAIL FROM / RCPT TO arguments on the wire get aiosmtpd's replies, fast path or not.

ccguard answers plain ``<local@domain>`` arguments without aiosmtpd's RFC 5322
parser (relay.smtp.mailpath).  That parser skips any white space after a blank
behind ``>`` (vertical tab, form feed, a bare CR, NBSP, ...) and a comment
after it; a client sending that must get the replies aiosmtpd gives.  A real
relay on loopback, a real aiosmtpd upstream, a raw smtplib client.
"""

from __future__ import annotations

import asyncio
import smtplib

from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream

MESSAGE = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: x\r\n\r\nHello\r\n"


def converse(port: int, mail: bytes, rcpt: bytes) -> list[int]:
    """The reply codes to raw MAIL and RCPT lines and, if both are taken, to the message."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        codes = []
        for line in (mail, rcpt):
            client.send(line + b"\r\n")
            codes.append(client.getreply()[0])
        if codes == [250, 250]:
            codes.append(client.data(MESSAGE)[0])
        return codes


async def test_comment_after_odd_white_space_is_skipped_as_aiosmtpd_does(
    upstream: RecordingUpstream,
) -> None:
    mail = b"MAIL FROM:<alice@example.org> \x0b(note) SIZE=100"
    rcpt = b"RCPT TO:<bob@example.com> \x0c(note)"
    async with running_relay(settings_for(upstream.port)) as relay:
        codes = await asyncio.to_thread(converse, relay.smtp_port, mail, rcpt)
    assert codes == [250, 250, 250]
    (got,) = upstream.messages
    assert (got.mail_from, got.rcpt_tos) == ("alice@example.org", ["bob@example.com"])
    assert got.data.endswith(MESSAGE)
