"""The decoded Subject of a message, for quarantine listings and notices."""

from __future__ import annotations

import email.policy
from email.parser import BytesHeaderParser

from relay.inspect.parsed import ParsedMessage, parse_message

__all__ = ["MAX_SUBJECT_CHARS", "decode_subject"]

MAX_SUBJECT_CHARS = 998


def decode_subject(message: ParsedMessage | bytes) -> str:
    """The first Subject header with RFC 2047 words (and raw UTF-8) decoded; "" if none.

    The field is found by the one header parser every stage uses
    (:func:`relay.inspect.parse_message`); only its value is decoded here.
    Whitespace runs (folding) become one space; capped at 998 characters.
    Never raises: a header the parser cannot decode is returned as raw text.
    """
    parsed = parse_message(message) if isinstance(message, bytes) else message
    field = next((f for f in parsed.fields if f.key == "subject"), None)
    if field is None:
        return ""
    head = field.raw + b"\r\n"
    try:
        value = BytesHeaderParser(policy=email.policy.default).parsebytes(head).get("subject")
    except Exception:  # a malformed header must not stop the message being held
        value = BytesHeaderParser(policy=email.policy.compat32).parsebytes(head).get("subject")
    text = " ".join(str(value or "").split())
    return text[:MAX_SUBJECT_CHARS]
