"""CPU cost of one transaction log line (run: python bench/bench_log_line.py [CHECKOUT ...]).

Configures logging as ``ccguard serve`` does (format json, level info, a hash
key), writes to a scratch file, and times ``log.info("transaction", ...)`` with
the fields of a real transaction line, through structlog's lazy proxy and
through a logger bound once.  Prints the best of several runs in µs per line.

Each CHECKOUT (default: this one) is measured in its own interpreter with its
``relay`` package first on the path, the checkouts interleaved round by round,
so ``bench/bench_log_line.py /path/to/main .`` compares before and after.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]
ROUNDS = 5
LINES = 2000
EXPOSURE = {
    "visible_total": 1, "visible_internal": 0, "visible_external": 1, "external_domains": 1,
    "unparseable": 0, "per_header": {"to": 1, "cc": 0, "resent-to": 0, "resent-cc": 0},
    "header_too_large": False,
    "calendar": {"invitation": False, "attendees_internal": 0, "attendees_external": 0,
                 "truncated": False, "methods": []},
}  # fmt: skip
FIELDS: dict[str, Any] = {
    "queue_id": "T4VBSWPK7TN9", "client_ip": "127.0.0.1", "auth_user": None, "tls": None,
    "tls_cipher": None, "sender": "h:c9f2b82893dcad27", "recipients": 1, "size": 4232,
    "line_endings_normalised": False, "action": "pass", "rule": None, "calendar_fallback": None,
    "exposure": EXPOSURE, "reply_code": 250, "reply_status": "2.0.0",
    "inspect_seconds": 8e-05, "duration_seconds": 0.004887,
}  # fmt: skip


def measure(checkout: str) -> str:
    """``lazy bound`` µs per line for the ``relay`` package of ``checkout``."""
    sys.path.insert(0, checkout)
    import structlog

    from relay.observability.logging import configure_logging
    from relay.settings import LoggingSettings

    with tempfile.TemporaryFile("w+") as out:
        configure_logging(LoggingSettings(format="json", level="info", hash_key="bench"), out)
        lazy = structlog.get_logger("ccguard")
        figures = []
        for log in (lazy, lazy.bind()):
            # The attribute looked up per line: a lazy proxy binds on each look-up.
            times = timeit.repeat(
                lambda log=log: log.info("transaction", **FIELDS), number=LINES, repeat=9
            )
            figures.append(f"{min(times) / LINES * 1e6:.1f}")
    return " ".join(figures)


def main(checkouts: list[str]) -> None:
    """Interleave the checkouts, one fresh interpreter per measurement; then medians."""
    got: dict[str, list[list[float]]] = {c: [] for c in checkouts}
    for round_no in range(ROUNDS):
        for checkout in checkouts:
            argv = [sys.executable, __file__, "--one", checkout]
            run = subprocess.run(argv, capture_output=True, text=True, check=True)
            got[checkout].append([float(f) for f in run.stdout.split()])
            print(f"round {round_no + 1} {checkout}: lazy/bound {run.stdout.strip()} us")
    for checkout, rounds in got.items():
        lazy, bound = (statistics.median(r[i] for r in rounds) for i in (0, 1))
        print(f"median {checkout}: lazy {lazy:.1f} us, bound {bound:.1f} us per line")


if __name__ == "__main__" and sys.argv[1:2] == ["--one"]:
    print(measure(sys.argv[2]))
elif __name__ == "__main__":
    main([str(Path(c).resolve()) for c in sys.argv[1:]] or [str(HERE)])
