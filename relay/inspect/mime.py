"""A bounded walk over a message's MIME tree, for the parts that hold calendars (pure).

Why by hand rather than ``email.message_from_bytes``: the stdlib parser builds
the whole tree, copies and decodes every part and has no bound on parts or
depth, and feeding it only a capped prefix would silently lose every part past
the cap (one large attachment before the invitation would hide it).  This walk
works on offsets into the message bytes already in memory: it finds boundaries
with ``bytes.find`` (linear, no copy, nothing decoded), splits each part's
header block with the same field parser as the message's own header
(:mod:`relay.inspect.headers`), and stops at ``max_parts`` parts or
``max_depth`` levels of nesting, reporting that it stopped (``overflow``).
Only the parts it returns are ever decoded, by the caller, within its own cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.message import Message

from relay.inspect.addresses import unfold
from relay.inspect.headers import decode_header_value, header_end, iter_fields

__all__ = ["MimeLeaf", "MimeWalk", "content_fields", "walk_mime"]

#: A part's own header block longer than this is not a header block we read.
MAX_PART_HEADER_BYTES = 64 * 1024
_WANTED = ("content-type", "content-transfer-encoding", "content-disposition")


@dataclass(frozen=True, slots=True)
class MimeLeaf:
    """One non-multipart part: its type, filename, transfer encoding and where
    its body lies in the message (``start`` to ``end``, not copied)."""

    content_type: str
    filename: str
    encoding: str
    charset: str
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


def walk_mime(
    data: bytes, start: int, fields: dict[str, str], *, max_parts: int, max_depth: int
) -> MimeWalk:
    """The leaves of the MIME entity whose body is ``data[start:]`` and whose
    (lower-case name → value) MIME ``fields`` are given, in order."""
    walk = MimeWalk()
    _entity(data, start, len(data), fields, 0, walk, max_parts, max_depth)
    return walk


def _entity(
    data: bytes,
    start: int,
    end: int,
    fields: dict[str, str],
    depth: int,
    walk: MimeWalk,
    max_parts: int,
    max_depth: int,
    default: str = "text/plain",
) -> None:
    msg = content_fields(fields)
    ctype = msg.get_content_type() if "content-type" in fields else default
    if ctype.startswith("multipart/") or ctype == "message/rfc822":
        if depth >= max_depth:
            walk.overflow = True
            return
        if ctype == "message/rfc822":
            _part(data, start, end, depth + 1, walk, max_parts, max_depth, "text/plain")
            return
        boundary = msg.get_param("boundary")
        if isinstance(boundary, str) and boundary:
            inner = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
            for begin, stop in _bodies(data, start, end, boundary.encode("utf-8", "replace")):
                if walk.overflow:
                    return
                _part(data, begin, stop, depth + 1, walk, max_parts, max_depth, inner)
        return
    charset = msg.get_content_charset() or "utf-8"
    walk.leaves.append(
        MimeLeaf(
            ctype,
            (msg.get_filename() or "").strip().lower(),
            str(fields.get("content-transfer-encoding", "")).strip().lower(),
            charset,
            start,
            end,
        )
    )


def _part(
    data: bytes,
    start: int,
    end: int,
    depth: int,
    walk: MimeWalk,
    max_parts: int,
    max_depth: int,
    default: str,
) -> None:
    """One body part: its own header block, then its body as an entity."""
    walk.parts += 1
    if walk.parts > max_parts:
        walk.overflow = True
        return
    window = data[start : min(end, start + MAX_PART_HEADER_BYTES)]
    head_len = header_end(window)
    if head_len is None:
        if end - start > MAX_PART_HEADER_BYTES:
            walk.overflow = True
            return
        head_len = end - start  # all header, empty body
    fields: dict[str, str] = {}
    for name, raw in iter_fields(window[:head_len]):
        if name in _WANTED and name not in fields:
            fields[name] = decode_header_value(raw)
    _entity(data, start + head_len, end, fields, depth, walk, max_parts, max_depth, default)


def _bodies(data: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """(start, end) of each body part between the delimiter lines of ``boundary``
    in ``data[start:end]``; an unclosed last part runs to ``end``, as mail
    readers show it.  The preamble and epilogue are not parts."""
    marker = b"--" + boundary
    spans: list[tuple[int, int]] = []
    opened: int | None = None
    pos = start
    while (hit := data.find(marker, pos, end)) >= 0:
        pos = hit + len(marker)
        if hit > start and data[hit - 1 : hit] not in (b"\n", b"\r"):
            continue  # not at the start of a line: part of the content
        line_end = data.find(b"\n", pos, end)
        line_end = end if line_end < 0 else line_end
        closing = data[pos : pos + 2] == b"--"
        if data[pos + 2 * closing : line_end].strip():
            continue  # a longer boundary (e.g. a nested part's) that starts with ours
        if opened is not None:
            spans.append((opened, _line_start(data, hit, opened)))
        if closing:
            return spans
        opened = min(line_end + 1, end)
    if opened is not None and opened < end:
        spans.append((opened, end))
    return spans


def _line_start(data: bytes, hit: int, floor: int) -> int:
    """Where the line ending before a delimiter at ``hit`` begins (it belongs
    to the delimiter, RFC 2046 §5.1.1)."""
    stop = hit
    if stop > floor and data[stop - 1 : stop] == b"\n":
        stop -= 1
    if stop > floor and data[stop - 1 : stop] == b"\r":
        stop -= 1
    return stop
