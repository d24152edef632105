"""The address of MAIL FROM and RCPT TO: a fast path for the plain form.

aiosmtpd parses the address of every MAIL and RCPT command with the standard
library's RFC 5322 header parser, and defines a ``typing.Protocol`` class on
each call: about 30 µs per command, the largest single cost of relaying a
small message (docs/throughput.md).  Nearly every address on the wire is
``<local@domain>`` with both sides dot-atoms, followed by nothing or by ESMTP
parameters; for that form the parser's answer is the text between the angle
brackets and the parameters after the blanks.  :func:`plain_address`
recognises exactly that form and nothing else; every other spelling (quoted
or non-ASCII local parts, comments, domain literals, source routes, encoded
words, no angle brackets) is left to aiosmtpd's parser, so the replies and
the parsed addresses are the ones aiosmtpd gives.  A property test holds the
two to the same answer.
"""

from __future__ import annotations

import re

from relay.mailbox import PLAIN_MAILBOX

__all__ = ["plain_address"]

_PLAIN = re.compile(rf"<({PLAIN_MAILBOX})>")


def plain_address(arg: str) -> tuple[str, str] | None:
    """``(address, parameters)`` of a command argument such as
    ``<alice@example.org> SIZE=100``, or ``None`` when it is not that plain form."""
    match = _PLAIN.match(arg)
    if match is None:
        return None
    address = match.group(1)
    if "=?" in address:  # the header parser would try it as an RFC 2047 encoded word
        return None
    rest = arg[match.end() :]
    if not rest:
        return address, ""
    if rest[0] not in " \t":
        return None
    # The header parser's folding white space: after a blank, every kind of
    # white space (str.lstrip), then comments, which are left to it.
    rest = rest.lstrip()
    return None if rest.startswith("(") else (address, rest)
