"""The decoded Subject of a raw message, for quarantine listings."""

from __future__ import annotations

import email.policy
from email.parser import BytesHeaderParser

__all__ = ["MAX_SUBJECT_CHARS", "decode_subject"]

MAX_SUBJECT_CHARS = 998


def _header_block(message: bytes) -> bytes:
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = message.find(separator)
        if end >= 0:
            return message[: end + len(separator)]
    return message


def decode_subject(message: bytes) -> str:
    """The Subject header with RFC 2047 words (and raw UTF-8) decoded; "" if none.

    Whitespace runs (folding) become one space; capped at 998 characters.
    Never raises: a header the parser cannot decode is returned as raw text.
    """
    head = _header_block(message)
    try:
        value = BytesHeaderParser(policy=email.policy.default).parsebytes(head).get("subject")
    except Exception:  # a malformed header must not stop the message being held
        raw = BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
        value = raw.get("subject")
    text = " ".join(str(value or "").split())
    return text[:MAX_SUBJECT_CHARS]
