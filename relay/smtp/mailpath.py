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

__all__ = ["plain_address"]

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_PLAIN = re.compile(rf"<({_DOT_ATOM}@{_DOT_ATOM})>")


def plain_address(arg: str) -> tuple[str, str] | None:
    """``(address, parameters)`` of a command argument such as
    ``<alice@example.org> SIZE=100``, or ``None`` when it is not that plain form."""
    match = _PLAIN.match(arg)
    if match is None:
        return None
    address, rest = match.group(1), arg[match.end() :]
    if "=?" in address:  # the header parser would try it as an RFC 2047 encoded word
        return None
    if not rest:
        return address, rest
    if rest[0] not in " \t":
        return None
    # After a blank the parser skips white space with str.lstrip(), which also
    # eats \v, \f, \r, \x1c-\x1f and Unicode spaces; a comment after it goes to it.
    rest = rest.lstrip()
    if rest.startswith("("):
        return None
    return address, rest
