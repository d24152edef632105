"""The fail-closed address scan: every ``@`` a reader sees yields an address (pure).

The structured parser in :mod:`relay.inspect.addresses` recognises mailboxes;
this scan covers everything else.  It looks at every at-sign (``@`` and its
look-alikes) of a header value, walks left over the local part and right over
the domain, and yields ``local@domain``.  No list of separators is consulted:
a local part or domain is made only of letters, marks and digits of any
script plus the few ASCII symbols RFC 5322 allows, so *any* other character
(ASCII or Unicode punctuation, symbols, spaces, brackets, ``/``, ``|``) ends
it.  Quoted local parts, quoted domains, domain literals, comments and blanks
next to the ``@`` or around a dot are read the RFC 5322 way.

Each at-sign is looked at once and every walk stops at the next at-sign, so
the scan is linear in the length of the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection

from relay.inspect.syntax import normalise_address, paren_matches

__all__ = ["AT_SIGNS", "Scanner", "scan_addresses"]

#: ``@`` and the characters whose NFKC compatibility form is ``@`` (U+FE6B
#: SMALL COMMERCIAL AT, U+FF20 FULLWIDTH COMMERCIAL AT): a reader sees an
#: address, so they count (tests check this set against unicodedata).
AT_SIGNS = "@\ufe6b\uff20"
_AT = re.compile(f"[{AT_SIGNS}]")
_DOTS = ".\u3002\uff0e\uff61"  # the dots IDNA (UTS-46) maps to "."
# Invisible format characters (zero-width, bidi controls, soft hyphen, BOM): a
# reader sees the text around them joined, so they are part of a run and dropped
# from the address (cutting there would make "info@e<ZWSP>xample.com" and
# "info@e<ZWSP>xample.net" one address).
_INVISIBLE = "\u00ad\u034f\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff"
_INVISIBLES = re.compile(f"[{_INVISIBLE}]+")
# Runs read backwards (on the reversed text) for local parts, forwards for domains.
_LOCAL_RUN = re.compile(f"[\\w!#$%&'*+=?^`{{}}~.{_INVISIBLE}-]+")
_DOMAIN_RUN = re.compile(f"[\\w.\u3002\uff0e\uff61{_INVISIBLE}-]+")
_QUOTE_OR_PAIR = re.compile(r'\\.|"', re.S)
_BLANKS = " \t\r\n"
_EDGES = "'`."  # quote marks around an address in prose, dots at its ends
# What may hold or continue an address next to a run (a quoted word, a comment,
# blanks, a dot): where these are found, the address is read the full way.
_BEFORE_AT = frozenset(' \t\r\n)"')
_AFTER_AT = frozenset(' \t\r\n("[')
_GOES_ON_LEFT = frozenset(")" + _DOTS)
_GOES_ON_RIGHT = frozenset("(" + _DOTS)
_FULL = ("", "")


def _is_mark(char: str) -> bool:
    return not char.isascii() and unicodedata.category(char)[0] == "M"


class Scanner:
    """Finds address-like tokens in one text; see :func:`scan_addresses`."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.rev = text[::-1]
        self.end = len(text)
        self._quotes: tuple[dict[int, int], dict[int, int]] | None = None
        self._parens: tuple[dict[int, int], dict[int, int]] | None = None
        self._bracket = (-1, -1)  # (searched from, first "]" at or after it)

    def tokens(self, skip: Collection[int] = ()) -> list[tuple[int, str]]:
        """(index of the at-sign, normalised ``local@domain``) for every
        at-sign not in ``skip`` with something on both sides of it."""
        found: list[tuple[int, str]] = []
        memo: dict[str, str] = {}  # the same raw token repeats in hostile input
        for match in _AT.finditer(self.text):
            at = match.start()
            if at in skip:
                continue
            pair = self._simple(at)
            if pair is _FULL:
                pair = self._full(at)
            if pair is None:
                continue
            raw = f"{pair[0]}@{pair[1]}"
            if (token := memo.get(raw)) is None:
                token = memo[raw] = normalise_address(_INVISIBLES.sub("", raw))
            found.append((at, token))
        return found

    def _simple(self, at: int) -> tuple[str, str] | None:
        """The common ``local@domain`` with nothing to read around it; None
        where nothing can be an address; :data:`_FULL` for the full reading."""
        text, end = self.text, self.end
        left = _LOCAL_RUN.match(self.rev, end - at)
        if left is None:  # '<@', ',@', '@@' have no local part; ' @', ')@', '"@' may
            before = text[at - 1] if at else ""
            return _FULL if before in _BEFORE_AT or _is_mark(before) else None
        right = _DOMAIN_RUN.match(text, at + 1)
        if right is None:
            after = text[at + 1] if at + 1 < end else ""
            return _FULL if after in _AFTER_AT or _is_mark(after) else None
        start, stop = end - left.end(), right.end()
        if self._continues_left(start) or self._continues_right(stop):
            return _FULL
        local, domain = text[start:at].strip(_EDGES), text[at + 1 : stop].strip(_DOTS)
        return (local, domain) if local and domain else None

    def _continues_left(self, start: int) -> bool:
        """Whether the local part may go on left of ``start`` (a dot, a
        comment or a combining mark, maybe after blanks)."""
        text = self.text
        if text[start] in _DOTS:
            return True
        pos = start
        while pos and text[pos - 1] in _BLANKS:
            pos -= 1
        return pos > 0 and (text[pos - 1] in _GOES_ON_LEFT or _is_mark(text[pos - 1]))

    def _continues_right(self, stop: int) -> bool:
        text, end = self.text, self.end
        if text[stop - 1] in _DOTS:
            return True
        pos = stop
        while pos < end and text[pos] in _BLANKS:
            pos += 1
        return pos < end and (text[pos] in _GOES_ON_RIGHT or _is_mark(text[pos]))

    def _full(self, at: int) -> tuple[str, str] | None:
        local = self._local(at).strip(_EDGES)
        domain = self._domain(at)
        if local and domain and (self._dotted(domain) or not self._spaced(at)):
            return local, domain
        return None

    def _spaced(self, at: int) -> bool:
        return self._skip_left(at) != at or self._skip_right(at + 1) != at + 1

    @staticmethod
    def _dotted(domain: str) -> bool:
        # "Team @ Home" in a display name is prose; "a1 @ example.com" an address.
        return domain.startswith("[") or any(dot in domain for dot in _DOTS)

    # --- left of the at-sign

    def _local(self, at: int) -> str:
        parts: list[str] = []
        pos = self._skip_left(at)
        while True:
            start = self._word_left(pos)
            if start == pos:
                break
            parts.append(self.text[start:pos])
            before = self._skip_left(start)
            if before == 0 or self.text[before - 1] not in _DOTS:
                break
            parts.append(".")
            pos = self._skip_left(before - 1)
        return "".join(reversed(parts))

    def _word_left(self, pos: int) -> int:
        """Start of the word (atom run or quoted string) ending at ``pos``."""
        if pos > 0 and self.text[pos - 1] == '"':
            opened = self._quote_pairs()[1].get(pos - 1)
            if opened is None:  # the quotes pair up differently: take the nearest
                opened = self.text.rfind('"', 0, pos - 1)
            return pos if opened < 0 else opened
        start = pos
        while True:
            match = _LOCAL_RUN.match(self.rev, self.end - start)
            if match:
                start = self.end - match.end()
            if start > 0 and _is_mark(self.text[start - 1]):
                start -= 1
                continue
            return start

    def _skip_left(self, pos: int) -> int:
        """``pos`` moved left over blanks and whole comments."""
        while pos > 0:
            char = self.text[pos - 1]
            if char in _BLANKS:
                pos -= 1
            elif char == ")" and (opened := self._paren_pairs()[1].get(pos)) is not None:
                pos = opened
            else:
                return pos
        return pos

    # --- right of the at-sign

    def _domain(self, at: int) -> str:
        pos = self._skip_right(at + 1)
        if pos >= self.end:
            return ""
        char = self.text[pos]
        if char == "[":
            close = self._next_bracket(pos)
            if close >= 0 and not _AT.search(self.text, pos, close):
                return self.text[pos : close + 1]
            pos += 1
        elif char == '"':
            quoted = self._quote_pairs()[0].get(pos)
            if quoted is not None:
                return self.text[pos + 1 : quoted].strip()
            pos += 1
        return self._labels(pos).strip(_DOTS)

    def _labels(self, pos: int) -> str:
        parts: list[str] = []
        while True:
            stop = self._run_right(pos)
            if stop == pos:
                break
            parts.append(self.text[pos:stop])
            after = self._skip_right(stop)
            if self.text[stop - 1] in _DOTS:
                pos = after
            elif after < self.end and self.text[after] in _DOTS:
                parts.append(".")
                pos = self._skip_right(after + 1)
            else:
                break
        return "".join(parts)

    def _run_right(self, pos: int) -> int:
        while True:
            match = _DOMAIN_RUN.match(self.text, pos)
            if match:
                pos = match.end()
            if pos < self.end and _is_mark(self.text[pos]):
                pos += 1
                continue
            return pos

    def _skip_right(self, pos: int) -> int:
        while pos < self.end:
            char = self.text[pos]
            if char in _BLANKS:
                pos += 1
            elif char == "(" and (close := self._paren_pairs()[0].get(pos)) is not None:
                pos = close
            else:
                return pos
        return pos

    def _next_bracket(self, pos: int) -> int:
        # At-signs come in increasing order, so remembering the last answer
        # keeps repeated searches (``@[@[@[``) linear.
        searched, found = self._bracket
        if not (searched <= pos and (found < 0 or pos <= found)) or searched < 0:
            found = self.text.find("]", pos)
            self._bracket = (pos, found)
        return found

    # --- pairs, computed once and only when needed

    def _quote_pairs(self) -> tuple[dict[int, int], dict[int, int]]:
        """(open → close, close → open) of the quoted strings, left to right;
        a backslash escapes the next character everywhere, as in comments."""
        if self._quotes is None:
            forward: dict[int, int] = {}
            opened = -1
            for match in _QUOTE_OR_PAIR.finditer(self.text):
                if match.group() != '"':
                    continue
                if opened < 0:
                    opened = match.start()
                else:
                    forward[opened], opened = match.start(), -1
            self._quotes = forward, {close: start for start, close in forward.items()}
        return self._quotes

    def _paren_pairs(self) -> tuple[dict[int, int], dict[int, int]]:
        """(``(`` → just past its ``)``, just past ``)`` → its ``(``)."""
        if self._parens is None:
            forward = paren_matches(self.text) if "(" in self.text else {}
            self._parens = forward, {close: start for start, close in forward.items()}
        return self._parens


def scan_addresses(text: str, skip: Collection[int] = ()) -> list[tuple[int, str]]:
    """(index of the at-sign, normalised address) for every at-sign of
    ``text`` (except those in ``skip``) that has a local part before it and a
    domain after it, in order.  Never raises; linear in ``len(text)``."""
    if not _AT.search(text):
        return []
    return Scanner(text).tokens(skip)
