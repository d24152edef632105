#!/usr/bin/env python3
"""`make bench`: run every ``bench/bench_*.py`` in turn, each in its own process.

Arguments after ``--`` are passed to every script (e.g. ``python bench/run.py -- --help``).
Exits non-zero if any benchmark failed, after running the others.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    scripts = sorted(BENCH.glob("bench_*.py"))
    if not scripts:
        print(f"bench: no bench_*.py in {BENCH}", file=sys.stderr)
        return 1
    failed = []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        started = time.monotonic()
        code = subprocess.run([sys.executable, str(script), *extra], cwd=BENCH.parent).returncode
        print(f"=== {script.name}: exit {code} in {time.monotonic() - started:.1f} s", flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"\nbench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
