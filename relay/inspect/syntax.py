"""Small RFC 5322 helpers shared by the parser and the scan (pure)."""

from __future__ import annotations

import re

from relay.inspect.domains import normalise_domain

__all__ = [
    "canonical_local",
    "normalise_address",
    "paren_matches",
    "strip_comments",
    "unfold",
    "unquote",
]

_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]"
_DOT_ATOM = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*")
_NEEDS_ESCAPE = re.compile(r'(["\\])')
_FOLD = re.compile(r"\r?\n(?=[ \t])")


def unfold(value: str) -> str:
    """Remove the line breaks of folded header lines (RFC 5322 section 2.2.3)."""
    return _FOLD.sub("", value) if "\n" in value else value


def unquote(text: str) -> str:
    """The content of a quoted string (without its quotes and escapes)."""
    return _QUOTED_PAIR.sub(r"\1", text[1:-1])


def normalise_address(addr: str) -> str:
    """``local@domain`` with the local part as written (quoted only if it must
    be) and the domain lower-cased and IDNA-normalised; never raises."""
    local, at, domain = addr.strip().rpartition("@")
    if not at:
        return addr.strip()
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        local = unquote(local)
    return f"{canonical_local(local)}@{normalise_domain(domain)}"


def canonical_local(local: str) -> str:
    """``local`` as a dot-atom if it is one, else as a quoted string."""
    if _DOT_ATOM.fullmatch(local):
        return local
    return '"' + _NEEDS_ESCAPE.sub(r"\\\1", local) + '"'


def paren_matches(value: str) -> dict[int, int]:
    """Index of each ``(`` → index just past its ``)``, nested, in one pass.

    Scanning each comment separately is quadratic on ``((((...`` (a denial of
    service on a 1 MiB header); a stack gives the same pairs in linear time.
    A backslash escapes the next character.
    """
    stack: list[int] = []
    closes: dict[int, int] = {}
    i, end = 0, len(value)
    while i < end:
        char = value[i]
        if char == "\\":
            i += 2
            continue
        if char == "(":
            stack.append(i)
        elif char == ")" and stack:
            closes[stack.pop()] = i + 1
        i += 1
    return closes


def strip_comments(value: str) -> str:
    """``value`` with its RFC 5322 comments (nested, outside quoted strings)
    replaced by a blank, in one linear pass; an unclosed comment runs to the end.

    MIME field values may hold comments (RFC 2045 section 5.1):
    ``text/calendar (invite); method=REQUEST`` is a calendar."""
    if "(" not in value:
        return value
    out: list[str] = []
    depth, quoted, i, end = 0, False, 0, len(value)
    while i < end:
        char = value[i]
        if char == "\\" and (quoted or depth):
            if not depth:
                out.append(value[i : i + 2])
            i += 2
            continue
        if depth:
            depth += (char == "(") - (char == ")")
            if not depth:
                out.append(" ")
        elif char == "(" and not quoted:
            depth = 1
        else:
            quoted ^= char == '"'
            out.append(char)
        i += 1
    return "".join(out)
