"""Finding the header block and its fields in raw message bytes (pure)."""

from __future__ import annotations

from collections.abc import Iterator

__all__ = ["decode_header_value", "header_end", "iter_fields", "split_header_block"]


def header_end(data: bytes) -> int | None:
    """Index just past the blank line ending the header block, or None if
    ``data`` holds no blank line (the header block may continue)."""
    if data.startswith(b"\r\n"):
        return 2
    if data.startswith(b"\n"):
        return 1
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep)) >= 0]
    return min(ends) if ends else None


def split_header_block(message: bytes) -> tuple[bytes, bytes]:
    """(header block including its terminating blank line, body).

    A message without a blank line is all header and has an empty body.
    ``head + body == message`` always.
    """
    end = header_end(message)
    if end is None:
        return message, b""
    return message[:end], message[end:]


def iter_fields(head: bytes) -> Iterator[tuple[str, bytes]]:
    """(lower-case name, raw value with its folding) of every field in ``head``.

    Lines that are neither a field nor a continuation are skipped; whitespace
    before the colon (obsolete syntax) is tolerated.
    """
    name: str | None = None
    parts: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and name is not None:
            parts.append(line)
            continue
        if name is not None:
            yield name, b"".join(parts)
        field_name, colon, rest = line.partition(b":")
        if colon and field_name.strip() and b" " not in field_name.strip():
            name = field_name.strip().decode("ascii", "replace").lower()
            parts = [rest]
        else:
            name, parts = None, []
    if name is not None:
        yield name, b"".join(parts)


def decode_header_value(raw: bytes) -> str:
    """Header bytes as text: UTF-8 (RFC 6532); other bytes kept reversibly as
    surrogate escapes, so ``value.encode("utf-8", "surrogateescape") == raw``."""
    return raw.decode("utf-8", "surrogateescape")
