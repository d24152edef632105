"""RFC 2047 encoded-word decoding that never raises (pure)."""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Iterator

__all__ = ["decode_encoded_words", "iter_decoded_runs"]

_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(r"(\?=)[ \t\r\n]+(?==\?)")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


def _charset(name: str) -> str:
    try:
        return codecs.lookup(name).name
    except (LookupError, ValueError):  # ValueError: a NUL in the name (found by fuzzing)
        return "utf-8"


def _decode_one(match: re.Match[str]) -> str:
    charset, encoding, text = match.groups()
    raw = text.encode("ascii", "replace")
    if encoding in "bB":
        try:
            data = base64.b64decode(raw + b"=" * (-len(raw) % 4))
        except (binascii.Error, ValueError):
            return match.group()
    else:
        data = _Q_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), raw.replace(b"_", b" "))
    try:
        return data.decode(_charset(charset), "replace")
    except (UnicodeError, LookupError):
        return data.decode("utf-8", "replace")


def decode_encoded_words(text: str) -> str:
    """``text`` with every ``=?charset?B|Q?...?=`` decoded; blanks between two
    adjacent encoded words dropped.  Malformed words are left as they are."""
    if "=?" not in text:
        return text
    return _ENCODED_WORD.sub(_decode_one, _BETWEEN_WORDS.sub(r"\1", text))


_RUN = re.compile(rf"{_ENCODED_WORD.pattern}(?:[ \t\r\n]*{_ENCODED_WORD.pattern})*")


def iter_decoded_runs(text: str) -> Iterator[tuple[int, str]]:
    """(start, decoded text) of every run of adjacent encoded words in ``text``."""
    if "=?" not in text:
        return
    for match in _RUN.finditer(text):
        yield match.start(), decode_encoded_words(match.group())
