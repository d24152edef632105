#!/usr/bin/env python3
"""Soak: hours of steady mixed traffic through a real ``ccguard serve`` (not a test).

A real ``python -m relay serve`` (real SQLite quarantine) sits in front of a real
aiosmtpd upstream run by this script, which counts what it accepts and keeps
nothing.  Clients (smtplib, a new connection per message) send at a steady rate
a repeating mix of:

* ``pass``       one external address in To: delivered unchanged;
* ``rewrite``    15 external addresses in To: rewritten (rule ``hide``);
* ``split``      15 external addresses, sender split@: one copy each (rule ``split``);
* ``quarantine`` 15 external addresses, sender hold@: held in SQLite (rule ``hold``);
* ``fault451``   the upstream answers 451 to DATA (ccguard must answer 451 too);
* ``faultdrop``  the upstream closes the connection at end of DATA (451 to the client);
* ``refused``    the upstream refuses the recipient at RCPT (550 passed through).

Every ``--interval`` seconds it samples ccguard's VmRSS, its open file
descriptors (/proc/<pid>/fd) and its established connections to the upstream
(/proc/<pid>/net/tcp[6]), prints a table row, and at the end says whether the
samples after ``--warmup`` stayed flat.

Usage: nice -n 10 python bench/soak.py [--duration 3600] [--rate 5] [--interval 60]
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_relay import ROOT, free_port, stop, wait_for_port
from memory import status_kib

KINDS = ("pass", "rewrite", "split", "quarantine", "pass", "fault451", "faultdrop", "refused")
FAULT = b"X-Soak-Fault: "


class CountingUpstream:
    """aiosmtpd handler: counts messages, keeps none; faults on request."""

    def __init__(self) -> None:
        self.accepted = 0
        self.lock = threading.Lock()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("refused@"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content
        head = content[: content.find(b"\r\n\r\n")]
        if FAULT + b"451" in head:
            return "451 4.3.0 soak: try again later"
        if FAULT + b"drop" in head:
            server.transport.close()
            return "421 4.4.2 soak: closing"
        with self.lock:
            self.accepted += 1
        return "250 2.0.0 OK: soaked"


def message(kind: str, seq: int) -> tuple[str, list[str], bytes]:
    """Sender, envelope recipients and bytes for one message of ``kind``."""
    sender = {"split": "split@example.org", "quarantine": "hold@example.org"}.get(
        kind, "alice@example.org"
    )
    wide = kind in ("rewrite", "split", "quarantine")
    shown = [f"user{n}@d{n % 7}.example.com" for n in range(15 if wide else 1)]
    rcpts = ["refused@example.com"] if kind == "refused" else shown
    fault = {"fault451": "451", "faultdrop": "drop"}.get(kind)
    head = f"From: <{sender}>\r\nTo: {', '.join(shown)}\r\nSubject: soak {kind} {seq}\r\n"
    head += f"Message-ID: <soak-{seq}@example.org>\r\n"
    if fault:
        head += f"X-Soak-Fault: {fault}\r\n"
    body = f"message {seq} of kind {kind}\r\n" + "lorem ipsum dolor sit amet\r\n" * 80
    return sender, rcpts, (head + "\r\n" + body).encode()


def send_one(port: int, kind: str, seq: int) -> str:
    """Send one message; returns the reply class ("2xx"/"4xx"/"5xx") or "error"."""
    sender, rcpts, data = message(kind, seq)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            client.sendmail(sender, rcpts, data)
        return "2xx"
    except smtplib.SMTPRecipientsRefused as exc:
        return f"{next(iter(exc.recipients.values()))[0] // 100}xx"
    except smtplib.SMTPResponseException as exc:
        return f"{exc.smtp_code // 100}xx"
    except (OSError, smtplib.SMTPException):
        return "error"


@dataclass
class Traffic:
    """Senders pacing themselves to ``rate`` messages/second in total."""

    port: int
    rate: float
    deadline: float
    replies: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seq: itertools.count[int] = field(default_factory=itertools.count)

    def worker(self, offset: float, workers: int) -> None:
        period = workers / self.rate
        due = time.monotonic() + offset
        while due < self.deadline:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing a load generator, not waiting on an event
            n = next(self.seq)
            kind = KINDS[n % len(KINDS)]
            outcome = send_one(self.port, kind, n)
            with self.lock:
                self.replies[f"{kind}:{outcome}"] += 1
            due += period


def upstream_connections(pid: int, upstream_port: int) -> int:
    """Established TCP connections of ``pid``'s network namespace to the upstream port."""
    count = 0
    for name in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{name}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            remote_port = int(cols[2].rsplit(":", 1)[1], 16)
            if remote_port == upstream_port and cols[3] == "01":
                count += 1
    return count


def write_config(workdir: Path, port: int, upstream_port: int) -> Path:
    config = workdir / "ccguard.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{port}"\nhostname = "ccguard.soak"\n'
        f'[upstream]\nhost = "127.0.0.1"\nport = {upstream_port}\nstarttls = "off"\n'
        f'[organisation]\ninternal_domains = ["example.org"]\n'
        f'[admin]\nenabled = false\n[quarantine]\ndatabase = "{workdir}/q.db"\n'
        f'[[policy.rules]]\nname = "split"\naction = "split"\nmin_visible_external = 10\n'
        f'senders = ["split@example.org"]\n'
        f'[[policy.rules]]\nname = "hold"\naction = "quarantine"\nmin_visible_external = 10\n'
        f'senders = ["hold@example.org"]\n'
        f'[[policy.rules]]\nname = "hide"\naction = "rewrite"\nmin_visible_external = 10\n'
        f'[logging]\nformat = "json"\nlevel = "warning"\nhash_key = "soak-only"\n'
    )
    return config


def flat(rows: list[tuple[float, int, int, int]], warmup: float) -> str:
    steady = [r for r in rows if r[0] >= warmup]
    if len(steady) < 2:
        return "too few samples after warm-up to judge"
    rss = [r[1] for r in steady]
    fds = [r[2] for r in steady]
    conns = [r[3] for r in steady]
    return (
        f"after warm-up ({len(steady)} samples): RSS {min(rss) / 1024:.1f}..{max(rss) / 1024:.1f}"
        f" MiB (first {rss[0] / 1024:.1f}, last {rss[-1] / 1024:.1f}), fds {min(fds)}..{max(fds)},"
        f" upstream connections {min(conns)}..{max(conns)}"
    )


def sample_loop(
    pid: int,
    upstream_port: int,
    args: argparse.Namespace,
    traffic: Traffic,
    upstream: CountingUpstream,
    proc: subprocess.Popen[bytes],
) -> None:
    started = time.monotonic()
    rows: list[tuple[float, int, int, int]] = []
    print(f"{'minute':>7} {'RSS MiB':>8} {'fds':>5} {'upstream':>8} {'sent':>7} "
          f"{'accepted':>8}  replies", flush=True)  # fmt: skip
    while True:
        now = time.monotonic() - started
        if proc.poll() is not None:
            raise SystemExit(f"soak: ccguard exited with {proc.returncode}")
        rss = status_kib(pid, "VmRSS")
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        conns = upstream_connections(pid, upstream_port)
        rows.append((now, rss, fds, conns))
        with traffic.lock:
            replies = dict(sorted(traffic.replies.items()))
            sent = sum(replies.values())
        classes = Counter(k.split(":")[1] for k in replies for _ in range(replies[k]))
        print(f"{now / 60:7.1f} {rss / 1024:8.1f} {fds:5d} {conns:8d} {sent:7d} "
              f"{upstream.accepted:8d}  {dict(sorted(classes.items()))}", flush=True)  # fmt: skip
        if now >= args.duration:
            break
        time.sleep(min(args.interval, max(0.0, args.duration - now)))  # the sampling period
    print(flat(rows, args.warmup), flush=True)
    print("replies by kind:", dict(sorted(traffic.replies.items())), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3600, help="seconds of traffic")
    parser.add_argument("--rate", type=float, default=5, help="messages per second")
    parser.add_argument("--interval", type=float, default=60, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=300, help="seconds before judging")
    parser.add_argument("--workers", type=int, default=8, help="client threads")
    args = parser.parse_args()
    # Stop cleanly on SIGTERM too (SIGINT is ignored in a background job): the
    # finally blocks stop ccguard and the upstream.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    upstream = CountingUpstream()
    controller = Controller(upstream, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        with tempfile.TemporaryDirectory(prefix="ccguard-soak-") as tmp:
            workdir = Path(tmp)
            port = free_port()
            config = write_config(workdir, port, controller.port)
            env = {k: v for k, v in os.environ.items() if not k.startswith("CCGUARD_")}
            env["PYTHONPATH"] = str(ROOT)
            with (workdir / "ccguard.log").open("wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "relay", "serve", "--config", str(config)],
                    stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                )  # fmt: skip
            try:
                wait_for_port(port, proc, "ccguard")
                print(f"# soak: {args.duration:.0f} s at {args.rate} msg/s, ccguard pid {proc.pid},"
                      f" git {git_head()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
                      flush=True)  # fmt: skip
                deadline = time.monotonic() + args.duration
                traffic = Traffic(port, args.rate, deadline)
                threads = [
                    threading.Thread(
                        target=traffic.worker, args=(i / args.rate, args.workers), daemon=True
                    )
                    for i in range(args.workers)
                ]
                for thread in threads:
                    thread.start()
                sample_loop(proc.pid, controller.port, args, traffic, upstream, proc)
                for thread in threads:
                    thread.join(120)
            finally:
                stop(proc)
    finally:
        controller.stop()
    return 0


def git_head() -> str:
    """The commit being soaked: $SOAK_COMMIT (for an exported tree), else git's HEAD."""
    if os.environ.get("SOAK_COMMIT"):
        return os.environ["SOAK_COMMIT"]
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
