"""atheris (libFuzzer) target for :func:`relay.inspect.inspect_message`.

Run it by hand for as long as you like::

    .venv/bin/python tests/fuzz/fuzz_inspect.py -max_total_time=600 corpus/

``tests/unit/test_inspect_fuzz.py`` runs it for a bounded time in CI.  Every
input must inspect without an exception, and the counts must be consistent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

with atheris.instrument_imports():
    from relay.inspect import DomainMatcher, inspect_message

MATCHER = DomainMatcher(["example.org", "*.corp.example.org"])


def check_one(data: bytes) -> None:
    """Inspect ``data`` as a whole message and as the value of a To field."""
    for message in (data, b"To: " + data.replace(b"\r", b" ").replace(b"\n", b" ") + b"\r\n\r\n"):
        exposure = inspect_message(message, MATCHER, max_header_bytes=8192)
        assert exposure.visible_total == exposure.visible_internal + exposure.visible_external
        assert exposure.unparseable <= exposure.visible_external
        assert exposure.visible_total == len(
            set(exposure.internal_addresses) | set(exposure.external_addresses)
        )
        assert sum(exposure.per_header.values()) >= exposure.visible_total - exposure.unparseable


def main() -> None:
    atheris.Setup(sys.argv, check_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
