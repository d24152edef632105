"""A bounded walk over a message's MIME tree, for the parts that hold calendars (pure).

Why by hand rather than ``email.message_from_bytes``: the stdlib parser builds
the whole tree, copies and decodes every part and has no bound on parts or
depth, and feeding it only a capped prefix would silently lose every part past
the cap (one large attachment before the invitation would hide it).  This walk
works on offsets into the message bytes already in memory: it finds delimiter
lines with ``bytes.find`` (linear, no copy, nothing decoded), splits each
part's header block with the same field parser as the message's own header
(:mod:`relay.inspect.headers`), and stops at ``max_parts`` parts (delimiter
look-alikes included) or ``max_depth`` levels of nesting, reporting that it
stopped (``overflow``).  Only the parts it returns are ever decoded, by the
caller, within its own cap.  Parameters are read with a small regular
expression; :class:`email.message.Message` (RFC 2231, quoting) is used on the
few fields that need it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message

from relay.inspect.addresses import unfold
from relay.inspect.headers import decode_header_value, header_end, iter_raw_fields

__all__ = ["MimeLeaf", "MimeWalk", "content_fields", "media_type", "walk_mime"]

#: A part's own header block longer than this is not a header block we read.
MAX_PART_HEADER_BYTES = 64 * 1024
_FIRST_WINDOW = 4096  # most part headers are a few hundred bytes: look there first
#: Fast-path misses (a ``-`` that starts no delimiter) before one plain search.
_FAST_MISSES = 32
_WANTED = ("content-type", "content-transfer-encoding", "content-disposition")
_BOUNDARY = re.compile(r';\s*boundary\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', re.I)


@dataclass(frozen=True, slots=True)
class MimeLeaf:
    """One non-multipart part: its lower-case media type, its MIME ``fields``
    (lower-case name → value) and where its body lies in the message
    (``start`` to ``end``, not copied)."""

    content_type: str
    fields: dict[str, str]
    start: int
    end: int


@dataclass(slots=True)
class MimeWalk:
    """What :func:`walk_mime` found; ``overflow`` means it stopped at a bound."""

    leaves: list[MimeLeaf] = field(default_factory=list)
    parts: int = 0
    overflow: bool = False


def content_fields(fields: dict[str, str]) -> Message:
    """A header-only :class:`email.message.Message` of the MIME fields, for its
    parameter parsing (quoting, RFC 2231 continuations); never the whole part."""
    msg = Message()
    for name in _WANTED:
        if name in fields:
            msg[name] = unfold(fields[name]).strip()
    return msg


def media_type(value: str) -> str:
    """``type/subtype`` of a Content-Type value, lower-case, without parameters."""
    return unfold(value).partition(";")[0].strip().lower()


def walk_mime(
    data: bytes, start: int, fields: dict[str, str], *, max_parts: int, max_depth: int
) -> MimeWalk:
    """The leaves of the MIME entity whose body is ``data[start:]`` and whose
    (lower-case name → value) MIME ``fields`` are given, in order."""
    walk = MimeWalk()
    _Walker(data, walk, max_parts, max_depth).entity(start, len(data), fields, 0, "text/plain")
    return walk


def _boundary(value: str) -> str | None:
    value = unfold(value)
    if "*" in value.partition(";")[2]:  # RFC 2231 form: let the stdlib read it
        found = content_fields({"content-type": value}).get_param("boundary")
        return found if isinstance(found, str) and found else None
    match = _BOUNDARY.search(value)
    if match is None:
        return None
    quoted, bare = match.groups()
    return re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare


@dataclass(slots=True)
class _Walker:
    data: bytes
    walk: MimeWalk
    max_parts: int
    max_depth: int

    def entity(
        self, start: int, end: int, fields: dict[str, str], depth: int, default: str
    ) -> None:
        ctype = media_type(fields["content-type"]) if "content-type" in fields else default
        if not ctype.startswith("multipart/") and ctype != "message/rfc822":
            self.walk.leaves.append(MimeLeaf(ctype, fields, start, end))
            return
        if depth >= self.max_depth:
            self.walk.overflow = True
        elif ctype == "message/rfc822":
            self.part(start, end, depth + 1, "text/plain")
        elif (boundary := _boundary(fields["content-type"])) is not None:
            inner = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            for begin, stop in self.bodies(start, end, boundary.encode("utf-8", "replace")):
                if self.walk.overflow:
                    return
                self.part(begin, stop, depth + 1, inner)

    def part(self, start: int, end: int, depth: int, default: str) -> None:
        """One body part: its own header block, then its body as an entity."""
        if not self.count():
            return
        window = self.data[start : min(end, start + _FIRST_WINDOW)]
        head_len = header_end(window)
        if head_len is None and end - start > _FIRST_WINDOW:
            window = self.data[start : min(end, start + MAX_PART_HEADER_BYTES)]
            head_len = header_end(window)
        if head_len is None:
            if end - start > MAX_PART_HEADER_BYTES:
                self.walk.overflow = True
                return
            head_len = end - start  # all header, empty body
        fields: dict[str, str] = {}
        for name, raw in iter_raw_fields(window[:head_len]):
            key = name.lower()
            if key in _WANTED and key not in fields:
                fields[key] = decode_header_value(raw.partition(b":")[2])
        self.entity(start + head_len, end, fields, depth, default)

    def count(self) -> bool:
        """Count one part (or delimiter look-alike); False once over the bound."""
        self.walk.parts += 1
        if self.walk.parts > self.max_parts:
            self.walk.overflow = True
        return not self.walk.overflow

    def bodies(self, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
        """(start, end) of each body part between the delimiter lines of
        ``boundary`` in ``data[start:end]``; an unclosed last part runs to
        ``end``, as mail readers show it.  Preamble and epilogue are no parts."""
        data, marker = self.data, b"--" + boundary
        spans: list[tuple[int, int]] = []
        opened: int | None = None
        pos = start
        while (hit := self.delimiter(marker, pos, start, end)) >= 0:
            pos = hit + len(marker)
            line_end = data.find(b"\n", pos, end)
            line_end = end if line_end < 0 else line_end
            closing = data[pos : pos + 2] == b"--"
            if data[pos + 2 * closing : line_end].strip():
                if not self.count():  # a longer boundary (a nested part's) starting with ours
                    return spans
                continue
            if opened is not None:
                spans.append((opened, _line_start(data, hit, opened)))
            if closing:
                return spans
            opened = min(line_end + 1, end)
        if opened is not None and opened < end:
            spans.append((opened, end))
        return spans

    def delimiter(self, marker: bytes, pos: int, start: int, end: int) -> int:
        """The next ``marker`` at ``start`` or just after a LF, from ``pos``.

        ``-`` is searched first (memchr speed: base64 and most binary parts
        hold none); after a few misses, one plain search for LF + marker.
        """
        data = self.data
        for _ in range(_FAST_MISSES):
            hit = data.find(b"-", pos, end)
            if hit < 0:
                return -1
            if data.startswith(marker, hit, end) and (hit == start or data[hit - 1] == 0x0A):
                return hit
            pos = hit + 1
        if pos == start and data.startswith(marker, start, end):
            return start
        hit = data.find(b"\n" + marker, max(pos - 1, start), end)
        return hit + 1 if hit >= 0 else -1


def _line_start(data: bytes, hit: int, floor: int) -> int:
    """Where the line ending before a delimiter at ``hit`` begins (it belongs
    to the delimiter, RFC 2046 §5.1.1)."""
    stop = hit
    if stop > floor and data[stop - 1 : stop] == b"\n":
        stop -= 1
    if stop > floor and data[stop - 1 : stop] == b"\r":
        stop -= 1
    return stop
