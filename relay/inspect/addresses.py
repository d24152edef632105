"""RFC 5322 address-list parsing that fails closed (pure, never raises).

A hand-written tokenizer (one regular expression plus nested comments) and a
small recursive-descent parser find the mailboxes.  It is about ten times
faster than ``email.policy.default`` on large headers (see
``bench/RESULTS.md``).  Display names are read leniently, the way mail
clients show them (``[EXT] Bob <bob@example.org>``, ``'ann@example.org'
<ann@example.org>``), and ``;`` outside a group separates like ``,``.

Then the fail-closed scan (:mod:`relay.inspect.scan`) looks at every at-sign
of the value that is not a parsed mailbox's own: in display names, comments,
group names, parts that do not parse, quoted local parts, domain literals and
decoded encoded words.  Each yields an address, reported in
:attr:`ParsedHeader.unparseable` so the caller counts it as external.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from relay.inspect.encoded_words import iter_decoded_runs
from relay.inspect.scan import scan_addresses
from relay.inspect.syntax import canonical_local, normalise_address, paren_matches, unfold, unquote

__all__ = [
    "Mailbox",
    "ParsedHeader",
    "address_like_tokens",
    "normalise_address",
    "parse_address_header",
    "unfold",
]

_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\n]+)
      | (?P<q>"(?:[^"\\]|\\.)*")
      | (?P<lit>\[[^\[\]\\]*\])
      | (?P<cmt>\()
      | (?P<sp>[<>,:;@.])
      | (?P<atom>[^ \t\r\n"\[\]()<>,:;@.\\]+)
      | (?P<err>.)""",
    re.X | re.S,
)


WORD = ("atom", "q")
# A display name as mail clients read it: any words, dots, brackets and at-signs
# (what it shows is scanned); an unclosed quote or comment still makes it broken.
_NAME_KINDS = frozenset(("atom", "q", ".", "lit", "@", "err"))
_NAME_ERRORS = frozenset('"(')


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One recipient: normalised ``address`` and ``domain``, and ``source``,
    the mailbox's own text (display name, comments, angle address) exactly as
    it appears in the unfolded header value.  ``shows`` are the addresses its
    display name and comments show, other than ``address`` itself (compared
    ignoring case): every recipient can read them, so they count as
    unparseable."""

    address: str
    domain: str
    source: str
    shows: tuple[str, ...] = ()


@dataclass(slots=True)
class ParsedHeader:
    """Everything one address header discloses.

    ``unparseable`` holds the normalised addresses the scan found outside the
    mailboxes' own addr-specs (in parts that do not parse, display names,
    comments, group names), not also found as a mailbox;
    ``unparseable_sources`` the original text of the parts that do not parse
    and of group names that show an address.
    """

    mailboxes: list[Mailbox] = field(default_factory=list)
    unparseable: list[str] = field(default_factory=list)
    unparseable_sources: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Tok:
    kind: str
    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Spec:
    local: str
    domain: str
    at: int  # index of its "@" in the value
    words: tuple[tuple[int, int], ...]  # spans of its quoted words, literals (and route's)


@dataclass(slots=True)
class _Segment:
    """One list element (``spec`` None if it does not parse), or ``quiet``: a
    well-formed group name or an element of comments only, which count only
    for the addresses they show."""

    start: int
    end: int
    spec: _Spec | None
    quiet: bool = False
    found: list[tuple[int, str]] | None = None  # what the scan found in it


def address_like_tokens(text: str) -> list[str]:
    """Every ``local@domain`` in ``text`` and in its encoded words, normalised,
    in order, without repeats (see :mod:`relay.inspect.scan`)."""
    return list(dict.fromkeys(token for _, token in _scan(text, ())))


def _scan(text: str, skip: set[int] | tuple[()]) -> list[tuple[int, str]]:
    found = scan_addresses(text, skip)
    for start, decoded in iter_decoded_runs(text):
        found.extend((start, token) for _, token in scan_addresses(decoded))
    return found


def _tokenize(value: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    closes = paren_matches(value) if "(" in value else {}
    quotes_close = True
    pos, end = 0, len(value)
    while pos < end:
        if value[pos] == '"' and not quotes_close:
            # An earlier quote never closed, so no later one can (see paren_matches).
            tokens.append(_Tok("err", '"', pos, pos + 1))
            pos += 1
            continue
        match = _TOKEN.match(value, pos)
        assert match is not None  # the "err" alternative matches any character
        kind = match.lastgroup or "err"
        if kind == "cmt":
            close = closes.get(pos, -1)
            if close < 0:
                tokens.append(_Tok("err", "(", pos, pos + 1))
                pos += 1
            else:
                pos = close
            continue
        if kind == "sp":
            tokens.append(_Tok(match.group(), match.group(), pos, match.end()))
        elif kind != "ws":
            quotes_close = quotes_close and not (kind == "err" and match.group() == '"')
            tokens.append(_Tok(kind, match.group(), pos, match.end()))
        pos = match.end()
    return tokens


def _word_value(tok: _Tok) -> str:
    return unquote(tok.text) if tok.kind == "q" else tok.text


def _parse_addr_spec(toks: list[_Tok]) -> _Spec | None:
    """The addr-spec made of ``toks``, or None."""
    at = next((i for i in range(len(toks) - 1, -1, -1) if toks[i].kind == "@"), -1)
    if at <= 0 or at == len(toks) - 1:
        return None
    local = _join_words(toks[:at], WORD)
    if local is None:
        return None
    dom = toks[at + 1 :]
    if len(dom) == 1 and dom[0].kind == "lit":
        domain = dom[0].text
    else:
        joined = _join_words(dom, ("atom",))
        if joined is None:
            return None
        domain = joined
    words = [(t.start, t.end) for t in toks[:at] if t.kind == "q"]
    if dom[-1].kind == "lit":
        words.append((dom[-1].start, dom[-1].end))
    return _Spec(local, domain, toks[at].start, tuple(words))


def _join_words(toks: list[_Tok], kinds: tuple[str, ...]) -> str | None:
    """Words separated by single dots (a trailing dot tolerated); else None."""
    parts: list[str] = []
    expect_word = True
    for tok in toks:
        if expect_word and tok.kind in kinds:
            parts.append(_word_value(tok))
        elif not expect_word and tok.kind == ".":
            parts.append(".")
        else:
            return None
        expect_word = not expect_word
    if not parts:
        return None
    return "".join(parts)


def _is_phrase(toks: list[_Tok]) -> bool:
    return all(tok.kind in WORD or tok.kind == "." for tok in toks)


def _is_display_name(toks: list[_Tok]) -> bool:
    return all(
        tok.kind in _NAME_KINDS and not (tok.kind == "err" and tok.text in _NAME_ERRORS)
        for tok in toks
    )


def _is_route(toks: list[_Tok]) -> bool:
    """obs-route: ``@a.example,@b.example`` (commas, empty elements allowed)."""
    groups: list[list[_Tok]] = [[]]
    for tok in toks:
        if tok.kind == ",":
            groups.append([])
        else:
            groups[-1].append(tok)
    for part in groups:
        if not part:
            continue
        if part[0].kind != "@":
            return False
        is_literal = len(part) == 2 and part[1].kind == "lit"
        if not is_literal and _join_words(part[1:], ("atom",)) is None:
            return False
    return True


def _parse_mailbox(toks: list[_Tok]) -> _Spec | None:
    """The addr-spec of a name-addr or addr-spec, or None if malformed."""
    if not toks or toks[-1].kind != ">":
        return _parse_addr_spec(toks)
    opens = [i for i, tok in enumerate(toks) if tok.kind == "<"]
    if len(opens) != 1 or not _is_display_name(toks[: opens[0]]):
        return None
    inner = toks[opens[0] + 1 : -1]
    if any(tok.kind in ("<", ">") for tok in inner):
        return None
    colon = next((i for i, tok in enumerate(inner) if tok.kind == ":"), -1)
    if colon < 0:
        return _parse_addr_spec(inner)
    if not _is_route(inner[:colon]):
        return None
    spec = _parse_addr_spec(inner[colon + 1 :])
    if spec is None:
        return None
    route = tuple((t.start, t.end) for t in inner[:colon] if t.kind == "lit")
    return _Spec(spec.local, spec.domain, spec.at, spec.words + route)


def _segments(value: str) -> list[_Segment]:
    """The list elements and group names of ``value``, in order."""
    segments: list[_Segment] = []
    cur: list[_Tok] = []
    start = 0
    in_angle = in_group = False

    def close(end: int) -> None:
        if cur:
            segments.append(_Segment(start, end, _parse_mailbox(cur)))
        elif "@" in value[start:end] or "=?" in value[start:end]:
            segments.append(_Segment(start, end, None, quiet=True))  # comments only

    for tok in _tokenize(value):
        kind = tok.kind
        if in_angle:
            cur.append(tok)
            in_angle = kind != ">"
        elif kind == "<":
            cur.append(tok)
            in_angle = True
        elif kind in (",", ";"):  # ";" outside a group: the way mail clients read it
            close(tok.start)
            cur, start = [], tok.end
            in_group = in_group and kind == ","
        elif kind == ":" and not in_group:
            segments.append(_Segment(start, tok.end, None, quiet=_is_phrase(cur)))
            cur, start, in_group = [], tok.end, True
        else:
            cur.append(tok)
    if in_angle and cur:
        segments.append(_Segment(start, len(value), None))
    else:
        close(len(value))
    return segments


def _assign(segments: list[_Segment], found: list[tuple[int, str]]) -> list[str]:
    """Put each scanned token into the segment holding its at-sign; returns
    the tokens outside every segment (none in practice: kept to fail closed)."""
    stray: list[str] = []
    index = 0
    for at, token in sorted(found):
        while index < len(segments) and segments[index].end <= at:
            index += 1
        if index < len(segments) and segments[index].start <= at:
            seg = segments[index]
            if seg.found is None:
                seg.found = []
            seg.found.append((at, token))
        else:
            stray.append(token)
    return stray


def _shows_inside(spec: _Spec, found: list[tuple[int, str]]) -> bool:
    """Whether an address was found inside the quoted words or literals of
    the mailbox's own addr-spec (or route)."""
    return any(start <= at < end for at, _ in found for start, end in spec.words)


def _collect(value: str, segments: list[_Segment], out: ParsedHeader) -> set[str]:
    seen: set[str] = set()
    for seg in segments:
        source = value[seg.start : seg.end].strip()
        spec = seg.spec
        tokens = [token for _, token in seg.found] if seg.found else []
        if spec is not None and seg.found and _shows_inside(spec, seg.found):
            # Its own quoted local part or literal shows addresses: it is one more.
            tokens.append(normalise_address(f"{canonical_local(spec.local)}@{spec.domain}"))
            spec = None
        if spec is None:
            if tokens or not seg.quiet:
                out.unparseable_sources.append(source)
            out.unparseable.extend(tokens)
            continue
        address = normalise_address(f"{canonical_local(spec.local)}@{spec.domain}")
        shows: tuple[str, ...] = ()
        if tokens:
            own = address.casefold()
            shows = tuple(dict.fromkeys(t for t in tokens if t.casefold() != own))
        out.mailboxes.append(Mailbox(address, address.rpartition("@")[2], source, shows))
        out.unparseable.extend(shows)
        seen.add(address)
    return seen


def parse_address_header(value: str) -> ParsedHeader:
    """Parse one To/Cc/Resent-* header value (folded or not); never raises.

    Groups are flattened (``undisclosed-recipients:;`` yields nothing) and
    obsolete syntax (routes, empty list elements, CFWS around dots) accepted.
    Every at-sign that is not a mailbox's own yields an unparseable address.
    """
    value = unfold(value)
    segments = _segments(value)
    own = {seg.spec.at for seg in segments if seg.spec is not None}
    found = _scan(value, own) if len(own) < value.count("@") or not value.isascii() else []
    if "=?" in value and not found:
        found = _scan(value, own)
    out = ParsedHeader()
    stray = _assign(segments, found)
    seen = _collect(value, segments, out)
    out.unparseable = list(dict.fromkeys(t for t in [*out.unparseable, *stray] if t not in seen))
    return out
