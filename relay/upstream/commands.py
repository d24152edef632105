"""MAIL FROM and RCPT TO to the upstream, without re-parsing plain addresses.

aiosmtplib's ``mail()`` and ``rcpt()`` run every address through
``email.utils.parseaddr`` to quote it (~5 µs a command).  An address that is a
plain ``local@domain`` (:mod:`relay.mailbox`) quotes to itself in angle
brackets, so those commands are sent with aiosmtplib's ``execute_command``
and answered with the same exceptions its own methods raise; any other
address, and a connection that has not said EHLO yet, go through aiosmtplib.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosmtplib
from aiosmtplib import SMTPResponse, SMTPStatus

from relay.mailbox import is_plain_mailbox

__all__ = ["mail", "rcpt"]

_RCPT_OK = (SMTPStatus.completed, SMTPStatus.will_forward)


def _fast(smtp: aiosmtplib.SMTP, address: str) -> bool:
    return not smtp.is_ehlo_or_helo_needed and is_plain_mailbox(address)


async def mail(
    smtp: aiosmtplib.SMTP, sender: str, options: Sequence[str], encoding: str
) -> SMTPResponse:
    """``MAIL FROM:<sender> OPTIONS``; raise ``SMTPSenderRefused`` unless 250."""
    if not _fast(smtp, sender):
        return await smtp.mail(sender, options=list(options), encoding=encoding)
    args = [b"FROM:<" + sender.encode(encoding) + b">", *(o.encode("ascii") for o in options)]
    response = await smtp.execute_command(b"MAIL", *args)
    if response.code != SMTPStatus.completed:
        raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)
    return response


async def rcpt(
    smtp: aiosmtplib.SMTP, recipient: str, options: Sequence[str], encoding: str
) -> SMTPResponse:
    """``RCPT TO:<recipient> OPTIONS``; raise ``SMTPRecipientRefused`` unless 250/251."""
    if not _fast(smtp, recipient):
        return await smtp.rcpt(recipient, options=list(options), encoding=encoding)
    args = [b"TO:<" + recipient.encode(encoding) + b">", *(o.encode("ascii") for o in options)]
    response = await smtp.execute_command(b"RCPT", *args)
    if response.code not in _RCPT_OK:
        raise aiosmtplib.SMTPRecipientRefused(response.code, response.message, recipient)
    return response
