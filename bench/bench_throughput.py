#!/usr/bin/env python3
"""Throughput against the libraries' floor and Postfix, in one interleaved run.

Postfix's ``smtp-source -s SESSIONS -d`` (connections reused) drives, on 127.0.0.1:

* ``sink``     the bare aiosmtpd sink (bench/floor_sink.py: accepts, keeps nothing),
* ``floor``    a minimal aiosmtpd + aiosmtplib relay (bench/floor_relay.py),
* ``floor-p2`` the same relay in two processes on one port (SO_REUSEPORT): what the
               bare libraries gain from a second core, the reference for workers = 2,
* ``ccguard``  ``python -m relay serve`` with rules that match nothing (all mail passes),
               once per ``--workers`` value (``ccguard-w2`` = ``[smtp] workers = 2``),
* ``postfix``  a private Postfix relay with its queue on disk (tests/helpers/postfix.py),

the relays forwarding to Postfix's ``smtp-sink``.  Each round runs every target once at
1 and at 10 recipients per message, in a rotating order, so slow phases of a shared
machine hit every target alike; the report gives the median msg/s, the median of the
per-round ratios, and the servers' CPU µs per message (their whole process tree, from
/proc) beside the load generator's (smtp-source and smtp-sink).  Unpinned, the
generator shares the servers' cores, which caps what a second process can add; on 2
CPUs the report prints that cap.  ``--pin SERVERS:GENERATOR`` (CPU lists, e.g.
``0,1:2,3``; ``auto``, the default, does so where there are at least three physical
cores) gives the servers and the generator cores of their own, which is how
"workers = 2 on 2 cores" is meant.
Then ``bench/probe.py`` measures a probe message's p50/p99 latency under a
steady background load through the floor relay and each ccguard.  Every count is
checked against what smtp-sink received.  Bounded: ``--rounds`` x targets runs of
``--messages`` each, every subprocess with a timeout; every server is stopped.

Usage: python bench/bench_throughput.py [--rounds 3] [--messages 2000] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench_relay import ROOT, SBIN, SENDER, Sink, free_port, stop, wait_for_port
from cpu_accounting import Pinning, machine_busy, pin_tree, run_counted, tree_cpu
from throughput_report import Target, report, second_core_cap

RCPT = "bob@example.com"


def rss_kib(pid: int) -> int:
    """Resident set of ``pid`` and its children (KiB)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(entry) == pid or fields.get("PPid", "").strip() == str(pid):
            total += int(fields.get("VmRSS", "0 kB").split()[0])
    return total


def _spawn(argv: list[str], log: Path, port: int, what: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCGUARD_")}
    env["PYTHONPATH"] = str(ROOT)
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    wait_for_port(port, proc, what)
    return proc


@contextmanager
def floor_process(script: str, workdir: Path, *args: str) -> Iterator[tuple[int, int]]:
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench" / script), str(port), *args]
    log = workdir / f"{'-'.join((script, *args[1:]))}.log"  # args[0]: a port
    proc = _spawn(argv, log, port, script)
    try:
        yield port, proc.pid
    finally:
        stop(proc)


@contextmanager
def ccguard_process(
    workdir: Path, upstream: int, workers: int, loop: str
) -> Iterator[tuple[int, int]]:
    port, admin = free_port(), free_port()
    config = workdir / f"ccguard-w{workers}-{loop}.toml"
    workers_line = f'workers = {workers}\nevent_loop = "{loop}"\n'
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{port}"\nhostname = "ccguard.bench"\n{workers_line}'
        f'[upstream]\nhost = "127.0.0.1"\nport = {upstream}\nstarttls = "off"\n'
        f'[organisation]\ninternal_domains = ["example.org"]\n'
        f'[admin]\nlisten = "127.0.0.1:{admin}"\n'
        f'[logging]\nformat = "json"\nlevel = "info"\nhash_key = "bench-only"\n'
    )
    argv = [sys.executable, "-m", "relay", "serve", "--config", str(config)]
    proc = _spawn(argv, workdir / f"ccguard-w{workers}-{loop}.log", port, "ccguard")
    try:
        yield port, proc.pid
    finally:
        stop(proc)


@contextmanager
def postfix_process(upstream: int) -> Iterator[tuple[int, int]]:
    sys.path.insert(0, str(ROOT))
    from tests.helpers.postfix import instance_dir, require_postfix, write_instance

    require_postfix()
    port = free_port()
    main = {"default_process_limit": "100", "smtp_connection_cache_on_demand": "yes"}
    instance = write_instance(
        instance_dir(), smtp_port=port, relayhost=f"[127.0.0.1]:{upstream}", main=main
    )
    instance.start()
    try:
        pid = instance.master_pid()
        with socket_ready(port):
            pass
        yield port, pid or 0
    finally:
        instance.stop()
        instance.discard()


@contextmanager
def socket_ready(port: int) -> Iterator[None]:
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    yield


SERVER_CPUS: frozenset[int] | None = None  # --pin: the servers' CPUs (the bench: the rest)


def started(port: int, pid: int) -> tuple[int, int]:
    """A server is up: with ``--pin``, put its whole process tree on the server CPUs."""
    if SERVER_CPUS:
        pin_tree(pid, set(SERVER_CPUS))
    return port, pid


def smtp_source(
    port: int, sessions: int, messages: int, rcpts: int, size: int
) -> tuple[float, float]:
    """Run smtp-source to the end: (wall seconds, its own CPU seconds)."""
    argv = [str(SBIN / "smtp-source"), "-s", str(sessions), "-m", str(messages), "-d"]
    argv += ["-l", str(size), "-r", str(rcpts), "-t", RCPT, "-f", SENDER, f"127.0.0.1:{port}"]
    done = run_counted(argv, timeout=600, cpus=None)
    if done.returncode != 0 or "fatal" in done.stderr:
        raise SystemExit(f"bench: smtp-source failed ({done.returncode}): {done.stderr.strip()}")
    return done.elapsed, done.cpu


def one_run(target: Target, sink: Sink, args: argparse.Namespace, rcpts: int) -> None:
    before_sink, before_cpu = sink.messages(), tree_cpu(target.pid)
    before_sink_cpu, before_busy = tree_cpu(sink.proc.pid), machine_busy()
    elapsed, source_cpu = smtp_source(target.port, args.sessions, args.messages, rcpts, args.size)
    if target.relays:  # every message must have reached the upstream (Postfix: drained)
        sink.wait_for(before_sink + args.messages, timeout=120)
    cpu = tree_cpu(target.pid) - before_cpu
    generator = source_cpu + tree_cpu(sink.proc.pid) - before_sink_cpu
    other = machine_busy() - before_busy - cpu - generator
    rate, per = args.messages / elapsed, 1e6 / args.messages
    target.rates.setdefault(rcpts, []).append(rate)
    target.cpu_us.setdefault(rcpts, []).append(cpu * per)
    target.generator_us.setdefault(rcpts, []).append(generator * per)
    target.other_us.setdefault(rcpts, []).append(other * per)
    print(
        f"  {target.name:<11} rcpt={rcpts:<3} {rate:>7.0f} msg/s  {cpu * per:>6.0f} CPU µs/msg  "
        f"(generator {generator * per:.0f}, nobody's {other * per:.0f})",
        flush=True,
    )


def probe(port: int, args: argparse.Namespace) -> str:
    argv = [sys.executable, str(ROOT / "bench" / "probe.py"), str(port)]
    argv += ["--rate", str(args.probe_rate), "--duration", str(args.probe_seconds)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=args.probe_seconds + 60)
    if done.returncode != 0:
        raise SystemExit(f"bench: probe failed: {done.stderr.strip()}")
    return done.stdout.strip()


def probe_rounds(targets: list[Target], args: argparse.Namespace) -> None:
    """Probe latency through each target, interleaved over ``--rounds`` like the rates."""
    print(f"\n# probe latency under {args.probe_rate:.0f} msg/s background load (ms)")
    got: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
    order = list(targets)
    for _ in range(args.rounds):
        for t in order:
            got[t.name].append(json.loads(probe(t.port, args)))
        order = order[1:] + order[:1]
    for name, runs in got.items():
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        rate = statistics.median(r["background_rate"] for r in runs)
        line = f"{name:<18} p50 {p50:6.2f}  p99 {p99:7.2f}  (background {rate:.0f} msg/s)"
        if name != "floor" and "floor" in got:
            ratios = [r["p99_ms"] / f["p99_ms"] for r, f in zip(runs, got["floor"], strict=True)]
            line += f"  p99 / floor per round: {' '.join(f'{x:.2f}' for x in ratios)}"
        print(line, flush=True)


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def flat_memory(targets: dict[str, Target], sink: Sink, args: argparse.Namespace) -> None:
    """RSS of each ccguard tree after N messages in all, for each N of ``--rss``."""
    marks = [int(n) for n in args.rss.split(",")]
    print(f"\n# RSS (process tree) after {', '.join(f'{n:,}' for n in marks)} messages")
    for t in (t for t in targets.values() if t.name.startswith("ccguard")):
        sent, readings = 0, []
        for mark in marks:
            while sent < mark:
                batch = min(20000, mark - sent)
                before = sink.messages()
                smtp_source(t.port, args.sessions, batch, 1, args.size)
                sink.wait_for(before + batch, timeout=120)
                sent += batch
            readings.append(rss_kib(t.pid) / 1024)
        growth = readings[-1] / readings[0] - 1
        shown = "  ".join(f"{n:,}: {r:.1f} MiB" for n, r in zip(marks, readings, strict=True))
        print(f"{t.name:<18} {shown}  ({growth * 100:+.1f} %)", flush=True)


def pin(spec: str) -> None:
    """``--pin``: the servers on their CPUs (each tree as it starts), this process and so
    the load generator it starts (smtp-source, smtp-sink, the probe) on the others."""
    global SERVER_CPUS
    try:
        pinning = Pinning.parse(spec)
    except ValueError as exc:
        raise SystemExit(f"bench: {exc}") from None
    print(f"# {pinning.describe()}")
    if pinning.servers and pinning.generator:
        SERVER_CPUS = pinning.servers
        os.sched_setaffinity(0, pinning.generator)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000, help="messages per run")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument(
        "--workers",
        default="1,2,1u,2u" if _has_uvloop() else "1,2",
        help='ccguard variants: worker counts, "u" suffix = uvloop (default: with it if installed)',
    )
    parser.add_argument("--targets", default="sink,floor,floor-p2,ccguard,postfix")
    parser.add_argument(
        "--pin",
        default="auto",
        help='SERVER_CPUS:GENERATOR_CPUS (e.g. "0,1:2,3"), "off", '
        'or "auto" (0,1:the rest with >= 4 CPUs)',
    )
    parser.add_argument("--rcpts", default="1,10")
    parser.add_argument("--probe-rate", type=float, default=200.0)
    parser.add_argument("--probe-seconds", type=float, default=6.0, help="0: no probe")
    parser.add_argument(
        "--rss",
        default="",
        help="e.g. 20000,200000: RSS of each ccguard after that many messages in all (flat memory)",
    )
    args, _ = parser.parse_known_args()  # make bench passes the same extras to every script
    # "2" = two workers on asyncio's loop, "2u" = on uvloop (pip install ccguard[fast])
    args.workers = [
        (int(w.rstrip("u")), "uvloop" if w.endswith("u") else "asyncio")
        for w in args.workers.split(",")
    ]
    args.rcpts = [int(r) for r in args.rcpts.split(",")]
    wanted = args.targets.split(",")
    print(
        f"# ccguard throughput, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}"
    )
    pin(args.pin)
    print(f"# smtp-source -s {args.sessions} -d -m {args.messages} -l {args.size} -r 1|10")
    with tempfile.TemporaryDirectory(prefix="ccguard-bench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        sink = Sink(workdir)
        stack.callback(stop, sink.proc)
        targets: dict[str, Target] = {}
        starters: dict[str, Callable[[], tuple[int, int]]] = {
            "sink": lambda: stack.enter_context(floor_process("floor_sink.py", workdir)),
            "floor": lambda: stack.enter_context(
                floor_process("floor_relay.py", workdir, str(sink.port))
            ),
            "floor-p2": lambda: stack.enter_context(
                floor_process("floor_relay.py", workdir, str(sink.port), "--processes", "2")
            ),
            "postfix": lambda: stack.enter_context(postfix_process(sink.port)),
        }
        for name in wanted:
            if name == "ccguard":
                for variant in args.workers:
                    w, loop = variant
                    label = f"ccguard-w{w}" + ("-uvloop" if loop == "uvloop" else "")
                    port, pid = started(
                        *stack.enter_context(ccguard_process(workdir, sink.port, w, loop))
                    )
                    targets[label] = Target(label, port, pid)
            else:
                port, pid = started(*starters[name]())
                targets[name] = Target(name, port, pid, relays=name != "sink")
        order = list(targets.values())
        for rnd in range(args.rounds):
            print(f"# round {rnd + 1}/{args.rounds}", flush=True)
            for rcpts in args.rcpts:
                for target in order:
                    one_run(target, sink, args, rcpts)
            order = order[1:] + order[:1]
        if args.rounds > 0:
            report(targets, args)
            second_core_cap(targets, args, pinned=SERVER_CPUS is not None)
        if args.probe_seconds > 0 and args.rounds > 0:
            probed = [t for t in targets.values() if t.name not in ("sink", "floor-p2")]
            probe_rounds(probed, args)
        for t in targets.values():
            if t.name.startswith("ccguard"):
                print(f"{t.name} RSS now {rss_kib(t.pid) / 1024:.1f} MiB")
        if args.rss:
            flat_memory(targets, sink, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
