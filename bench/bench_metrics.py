"""CPU cost of the metric operations one relayed message makes (run: python bench/bench_metrics.py).

A message that passes, with one recipient, over a client session that stays
open (``smtp-source -d``) makes exactly these calls on :class:`Metrics`
(relay/smtp/server.py, session.py, budget.py, relay/upstream/client.py):
four replies (MAIL 250, RCPT 250, DATA 354, end of data 250), the in-flight
gauge set twice (DATA reserved, released), one upstream observation and one
``observe_message``.  This times that sequence with ``timeit`` (CPU time,
best of several repeats) in microseconds per message, with plain in-process
values and in prometheus-client's multiprocess mode (``[smtp] workers > 1``),
each in a fresh interpreter.

``--tree DIR`` times another checkout's code (e.g. ``git archive main``
unpacked in /tmp) in the same interleaved run, so that before/after ratios
come from one sitting: ``python bench/bench_metrics.py --tree /tmp/main``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
LOOPS = 20_000
REPEATS = 7


def one_message_calls() -> object:
    """A function making one passing message's metric calls (imports the tree on sys.path)."""
    from relay.inspect import Exposure
    from relay.observability.metrics import Metrics
    from relay.policy.verdict import Action, Verdict

    metrics = Metrics(version="bench", mode="enforce")
    exposure = Exposure(visible_external=1, external_domains=1)
    verdict = Verdict(Action.PASS, None, "no rule matched", exposure)

    def message() -> None:
        metrics.observe_reply("mail", 250)
        metrics.observe_reply("rcpt", 250)
        metrics.set_inflight_bytes(4096 + 65536)
        metrics.observe_reply("data", 354)
        metrics.observe_upstream("accepted", 0.0021, None)
        metrics.observe_message(verdict, 4096, 0.000037)
        metrics.set_inflight_bytes(0)
        metrics.observe_reply("data", 250)

    return message


def measure(mode: str) -> float:
    """µs of CPU per message, best of REPEATS runs of LOOPS messages."""
    if mode == "multiprocess":
        from relay.observability import multiprocess

        multiprocess.enable(tempfile.mkdtemp(prefix="ccguard-bench-metrics-"))
    message = one_message_calls()
    timer = timeit.Timer(message, timer=time.process_time)  # type: ignore[arg-type]
    best = min(timer.repeat(repeat=REPEATS, number=LOOPS))
    return best / LOOPS * 1e6


def _child(tree: Path, mode: str) -> float:
    code = (
        f"import sys; sys.path.insert(0, {str(tree)!r});"
        f"sys.path.insert(1, {str(HERE / 'bench')!r});"
        f"import bench_metrics; print(bench_metrics.measure({mode!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, help="also time this checkout (the reference)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args, _ = parser.parse_known_args()  # make bench passes the same extras to every script
    trees = {"this": HERE} | ({"reference": args.tree} if args.tree else {})
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for mode in ("single", "multiprocess"):
            for name, tree in trees.items():
                results.setdefault(f"{name} {mode}", []).append(_child(tree, mode))
    medians = {key: statistics.median(values) for key, values in results.items()}
    if args.json:
        print(json.dumps(medians, indent=2))
        return
    for key, value in medians.items():
        spread = ", ".join(f"{v:.1f}" for v in results[key])
        print(f"{key:28} {value:6.1f} µs/message  (rounds: {spread})")


if __name__ == "__main__":
    main()
