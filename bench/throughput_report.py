"""The throughput bench's figures: one target's runs, and the report over rounds."""

from __future__ import annotations

import argparse
import os
import statistics
from dataclasses import dataclass, field

__all__ = ["Target", "report", "second_core_cap"]


@dataclass
class Target:
    name: str
    port: int
    pid: int
    relays: bool = True  # False for the sink: nothing reaches smtp-sink
    rates: dict[int, list[float]] = field(default_factory=dict)
    cpu_us: dict[int, list[float]] = field(default_factory=dict)
    generator_us: dict[int, list[float]] = field(default_factory=dict)
    other_us: dict[int, list[float]] = field(default_factory=dict)  # nobody's: other load


def ratios(a: Target, b: Target, rcpts: int) -> list[float]:
    return [x / y for x, y in zip(a.rates[rcpts], b.rates[rcpts], strict=True)]


def report(targets: dict[str, Target], args: argparse.Namespace) -> None:
    """Medians over the rounds and per-round ratios of the pairs the issue's targets name."""
    print("\n# medians over rounds (msg/s; CPU µs per message: server, generator, nobody's)")
    for rcpts in args.rcpts:
        for t in targets.values():
            print(
                f"rcpt={rcpts:<3} {t.name:<11} {statistics.median(t.rates[rcpts]):>7.0f} msg/s  "
                f"{statistics.median(t.cpu_us[rcpts]):>6.0f} µs/msg  "
                f"generator {statistics.median(t.generator_us[rcpts]):>4.0f}  "
                f"nobody's {statistics.median(t.other_us[rcpts]):>4.0f}"
            )
    print("\n# per-round ratios (median [min..max])")
    pairs: list[tuple[str, str]] = [("floor-p2", "floor")]
    for cc in (name for name in targets if name.startswith("ccguard")):
        pairs += [(cc, "floor"), (cc, "sink"), (cc, "postfix")]
        if cc.startswith("ccguard-w2"):
            pairs += [(cc, cc.replace("-w2", "-w1")), (cc, "floor-p2")]
        if cc.endswith("-uvloop"):
            pairs.append((cc, cc.removesuffix("-uvloop")))
    for rcpts in args.rcpts:
        for a, b in pairs:
            if a in targets and b in targets:
                r = ratios(targets[a], targets[b], rcpts)
                print(
                    f"rcpt={rcpts:<3} {a} / {b:<11} {statistics.median(r):.2f}  "
                    f"[{min(r):.2f}..{max(r):.2f}]  rounds: {' '.join(f'{x:.2f}' for x in r)}"
                )


def second_core_cap(targets: dict[str, Target], args: argparse.Namespace, pinned: bool) -> None:
    """What a second process can add at best when the load generator shares the cores.

    Two processes and the generator on ``cpus`` cores relay at most
    cpus x 1e6 / (server_us + generator_us) msg/s if the per-message costs stay as
    they were; divided by one process's measured msg/s, that is the cap.  It means
    something only if one process kept a core busy and the machine ran nothing else:
    the report says when it did not."""
    cpus = len(os.sched_getaffinity(0))
    if pinned or cpus > 2:
        return
    print(f"\n# cap on 2 processes / 1 with the load generator on the same {cpus} CPUs")
    for rcpts in args.rcpts:
        for name in (n for n in targets if n == "floor" or n.startswith("ccguard-w1")):
            t = targets[name]
            server, generator, other, rate = (
                statistics.median(v[rcpts]) for v in (t.cpu_us, t.generator_us, t.other_us, t.rates)
            )
            cap = min(2.0, cpus * 1e6 / (server + generator) / rate)
            line = (
                f"rcpt={rcpts:<3} {name:<18} {cap:.2f}  ({cpus} CPUs / (server {server:.0f} "
                f"+ generator {generator:.0f} µs/msg) / {rate:.0f} msg/s)"
            )
            if rate * server < 0.9e6:
                line += f"  NOT MEANINGFUL: one process used {rate * server / 1e6:.2f} CPU"
            if other > 0.05 * (server + generator):
                line += f"  NOT MEANINGFUL: {other:.0f} µs/msg of other load on the machine"
            print(line)
