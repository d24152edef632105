"""Finding clear-text email addresses in log output (the guard must not leak)."""

from __future__ import annotations

import io
import re

__all__ = ["LOG_STREAMS", "clear_addresses", "register_stream"]

# A local part followed by @ and a domain: what a leaked address looks like. A bare
# "*@example.com" (domain only) and "h:…" hashes do not match, by design.
_ADDRESS = re.compile(
    r"[\w.%+-]+@(?:\[[0-9A-Fa-f:.]+\]|(?:[\w-]+\.)*[\w-]*[a-z][\w-]*)",
    re.IGNORECASE | re.UNICODE,
)

LOG_STREAMS: list[io.StringIO] = []


def register_stream(stream: io.StringIO) -> io.StringIO:
    """Have the suite-wide privacy check scan everything written to ``stream``."""
    LOG_STREAMS.append(stream)
    return stream


def clear_addresses(text: str) -> list[str]:
    """Every clear-text address in ``text``."""
    return _ADDRESS.findall(text)
