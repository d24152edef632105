"""The plain mailbox ``local@domain``: both sides RFC 5322 dot-atoms, ASCII only.

Nearly every address on the wire has this form, and for it the libraries'
general parsers (aiosmtpd's for MAIL/RCPT, aiosmtplib's quoting for the
upstream) give the text itself back, at some 5 to 30 µs a call.  The SMTP front
and the upstream client check for this form first and call the library only
for the others (docs/throughput.md).
"""

from __future__ import annotations

import re

__all__ = ["PLAIN_MAILBOX", "is_plain_mailbox"]

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
PLAIN_MAILBOX = rf"{_DOT_ATOM}@{_DOT_ATOM}"
_PLAIN = re.compile(PLAIN_MAILBOX)


def is_plain_mailbox(address: str) -> bool:
    """Whether ``address`` is a plain ``local@domain`` with no RFC 2047 marker."""
    return _PLAIN.fullmatch(address) is not None and "=?" not in address
