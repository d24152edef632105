#!/usr/bin/env python3
"""Peak memory of relaying large messages through a real ``ccguard serve``.

A real ``python -m relay serve`` runs in front of Postfix's ``smtp-sink`` (a real
upstream that discards what it receives, so only ccguard holds the message).
For each scenario a fresh ccguard is started, its resident set (VmRSS) read once
it is idle, the message(s) sent with smtplib, and the kernel's peak resident set
(VmHWM in /proc/<pid>/status) read afterwards.  Growth = VmHWM - idle VmRSS, and
the ratio is growth divided by the bytes of message(s) in flight at once.

Scenarios: ``pass`` (one message, no rule matches), ``rewrite`` (one message
whose To shows 20 external addresses, rewritten), ``split`` (three external
recipients, one copy each), ``quarantine`` (held in the SQLite quarantine),
``pass4`` (four messages sent at the same time on four connections), ``flood8``
(eight at once, 480 MB against the default 256 MiB ``max_inflight_bytes``: some
get ``452 4.3.1``; the ratio is then over all eight, refused ones included).

Usage: python bench/memory.py [--size 60000000] [--scenarios pass,rewrite,split,quarantine,pass4]
"""

from __future__ import annotations

import argparse
import os
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_relay import ROOT, SBIN, Sink, free_port, stop, wait_for_port

SENDER = "alice@example.org"
RCPT = "bob@example.com"
MiB = 1024 * 1024


def status_kib(pid: int, field: str) -> int:
    """One ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"bench: no {field} for pid {pid}")


@contextmanager
def ccguard(workdir: Path, upstream_port: int, max_size: int) -> Iterator[tuple[int, int]]:
    """A real ccguard in front of ``upstream_port``; yields (smtp port, pid)."""
    port = free_port()
    config = workdir / "ccguard.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{port}"\nhostname = "ccguard.bench"\n'
        f"max_message_size = {max_size}\n"
        f'[upstream]\nhost = "127.0.0.1"\nport = {upstream_port}\nstarttls = "off"\n'
        f'[organisation]\ninternal_domains = ["example.org"]\n'
        f'[admin]\nenabled = false\n[quarantine]\ndatabase = "{workdir}/q.db"\n'
        f'[[policy.rules]]\nname = "split"\naction = "split"\nmin_visible_external = 3\n'
        f'senders = ["split@example.org"]\n'
        f'[[policy.rules]]\nname = "hold"\naction = "quarantine"\nmin_visible_external = 3\n'
        f'senders = ["hold@example.org"]\n'
        f'[[policy.rules]]\nname = "hide"\naction = "rewrite"\nmin_visible_external = 10\n'
        f'[logging]\nformat = "json"\nlevel = "info"\nhash_key = "bench-only"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCGUARD_")}
    env["PYTHONPATH"] = str(ROOT)
    with (workdir / "ccguard.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "serve", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
    try:
        wait_for_port(port, proc, "ccguard")
        yield port, proc.pid
    finally:
        stop(proc)


#: scenario -> (envelope sender, external addresses shown in To, messages at once)
SCENARIOS = {
    "pass": (SENDER, 0, 1),
    "rewrite": (SENDER, 20, 1),
    "split": ("split@example.org", 3, 1),
    "quarantine": ("hold@example.org", 3, 1),
    "pass4": (SENDER, 0, 4),
    "flood8": (SENDER, 0, 8),
}


def message(size: int, shown: list[str]) -> bytes:
    """A plain-text message of about ``size`` bytes, 76-character lines, all starting
    with a dot (so the dot-stuffing is exercised too)."""
    head = (
        f"From: Alice <{SENDER}>\r\nTo: {', '.join(shown)}\r\nSubject: large\r\n"
        "Message-ID: <bench-memory@example.org>\r\n\r\n"
    ).encode()
    line = b"." + b"x" * 73 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def send(port: int, sender: str, rcpts: list[str], data: bytes, errors: list[str]) -> None:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=300) as client:
            client.sendmail(sender, rcpts, data)
    except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
        errors.append("452" if exc.smtp_code == 452 else repr(exc))  # smtplib sends SIZE=
    except smtplib.SMTPException as exc:
        errors.append(repr(exc))


def run(name: str, args: argparse.Namespace, sink: Sink, workdir: Path) -> None:
    sender, externals, parallel = SCENARIOS[name]
    shown = [f"user{n}@d{n}.example.com" for n in range(externals)] or [RCPT]
    data = message(args.size, shown)
    deliveries = parallel * len(shown) if name == "split" else parallel
    deliveries = 0 if name == "quarantine" else deliveries
    before = sink.messages()
    with ccguard(workdir, sink.port, args.size * 2) as (port, pid):
        send(port, SENDER, [RCPT], b"Subject: warm-up\r\n\r\nhi\r\n", [])  # imports, pools
        sink.wait_for(before + 1)
        idle = status_kib(pid, "VmRSS")
        errors: list[str] = []
        threads = [
            threading.Thread(target=send, args=(port, sender, shown, data, errors))
            for _ in range(parallel)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        elapsed = time.perf_counter() - started
        refused = errors.count("452")  # [limits] max_inflight_bytes at work
        sink.wait_for(before + 1 + deliveries - refused, timeout=120)
        peak = status_kib(pid, "VmHWM")
    if len(errors) > refused:
        raise SystemExit(f"bench: {name}: {errors}")
    growth = (peak - idle) * 1024
    ratio = growth / (len(data) * parallel)
    print(
        f"{name:<10} {parallel} x {len(data) / MiB:6.1f} MiB  idle {idle / 1024:6.1f} MiB  "
        f"peak {peak / 1024:7.1f} MiB  growth {growth / MiB:7.1f} MiB  "
        f"ratio {ratio:4.2f}x  {elapsed:5.1f} s" + (f"  ({refused} got 452)" if refused else ""),
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=60_000_000, help="message size in bytes")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    if not (SBIN / "smtp-sink").exists():
        raise SystemExit("bench: /usr/sbin/smtp-sink missing: install the Debian package postfix")
    print(f"# ccguard peak memory, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="ccguard-memory-") as tmp:
        sink = Sink(Path(tmp))
        try:
            for name in args.scenarios.split(","):
                run(name, args, sink, Path(tmp))
        finally:
            stop(sink.proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
