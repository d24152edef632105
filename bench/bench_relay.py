#!/usr/bin/env python3
"""Relay throughput: Postfix's smtp-source → ccguard → Postfix's smtp-sink, on loopback.

ccguard runs as a real process (``python -m relay serve`` with a temp config), the way an
administrator runs it, logging at info level to a file.  Counts are bounded; every
process this script starts, it stops.  Prints messages/second for:

* smtp-source straight into smtp-sink (the ceiling of this machine, no ccguard),
* smtp-source through ccguard, a new connection per message,
* smtp-source through ccguard, connections reused (``smtp-source -d``),

and the latency of one message carrying 1,000 addresses in To/Cc (with 1,000 envelope
recipients, and with one), sent with smtplib.

Usage: python bench/bench_relay.py [--messages 2000] [--sessions 20] [--size 4096]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SBIN = Path("/usr/sbin")
SENDER = "alice@example.org"
RCPT = "bob@example.com"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {what} exited with {proc.returncode} before listening")
        try:  # the greeting, not only the connect: [smtp] workers' supervisor binds
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                if sock.recv(512).startswith(b"220"):  # before any worker is ready
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"bench: {what} not listening on 127.0.0.1:{port} after {timeout}s")


def stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, wait (bounded), then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Sink:
    """``smtp-sink -c 127.0.0.1:PORT 1000``; counts completed DATA commands."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.out = workdir / "smtp-sink.out"
        argv = [str(SBIN / "smtp-sink"), "-c"]
        if os.geteuid() == 0:  # smtp-sink refuses to keep root privileges
            argv += ["-u", "nobody"]
        argv += [f"127.0.0.1:{self.port}", "1000"]
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, "smtp-sink")

    def messages(self) -> int:
        """Messages received so far (the last ``mesg=N`` of the running counter)."""
        counts = re.findall(rb"mesg=(\d+)", self.out.read_bytes())
        return int(counts[-1]) if counts else 0

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.messages() < count and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.messages() < count:
            raise SystemExit(f"bench: smtp-sink got {self.messages()} messages, expected {count}")


@contextmanager
def ccguard(workdir: Path, upstream_port: int, extra: str = "") -> Iterator[int]:
    """``python -m relay serve`` in front of ``upstream_port``; yields its SMTP port.

    ``extra`` is appended to the generated config (more TOML sections)."""
    port = free_port()
    config = workdir / "ccguard.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{port}"\nhostname = "ccguard.bench"\n'
        f"max_recipients = 1000\n"
        f'[upstream]\nhost = "127.0.0.1"\nport = {upstream_port}\nstarttls = "off"\n'
        f'[organisation]\ninternal_domains = ["example.org"]\n'
        f'[logging]\nformat = "json"\nlevel = "info"\nhash_key = "bench-only"\n' + extra
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCGUARD_")}
    env["PYTHONPATH"] = str(ROOT)
    with (workdir / "ccguard.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "serve", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
        )
    try:
        wait_for_port(port, proc, "ccguard")
        yield port
    finally:
        stop(proc)


def smtp_source(port: int, *, sessions: int, messages: int, size: int, reuse: bool) -> float:
    """Run smtp-source to completion; returns the elapsed seconds."""
    argv = [str(SBIN / "smtp-source"), "-s", str(sessions), "-m", str(messages)]
    argv += ["-l", str(size), "-t", RCPT, "-f", SENDER]
    if reuse:
        argv.append("-d")
    argv.append(f"127.0.0.1:{port}")
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0 or "fatal" in done.stderr:
        raise SystemExit(f"bench: smtp-source failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def throughput(sink: Sink, port: int, label: str, args: argparse.Namespace, reuse: bool) -> None:
    before = sink.messages()
    elapsed = smtp_source(
        port, sessions=args.sessions, messages=args.messages, size=args.size, reuse=reuse
    )
    sink.wait_for(before + args.messages)
    rate = args.messages / elapsed
    print(f"{label:<52} {args.messages:>6} msgs {elapsed:>7.2f} s {rate:>9.0f} msg/s", flush=True)


def wide_message(addresses: int) -> tuple[bytes, list[str]]:
    """A message showing ``addresses`` external addresses, half in To and half in Cc."""
    rcpts = [f"user{n}@d{n % 50}.example.com" for n in range(addresses)]
    half = addresses // 2
    to = ",\r\n ".join(rcpts[:half])
    cc = ",\r\n ".join(rcpts[half:])
    message = (
        f"From: Alice <{SENDER}>\r\nTo: {to}\r\nCc: {cc}\r\n"
        "Subject: everyone in copy\r\nMessage-ID: <bench-wide@example.org>\r\n\r\n"
        "Hello all,\r\n" + "body line\r\n" * 50
    ).encode()
    return message, rcpts


def wide_latency(port: int, addresses: int, envelope_rcpts: int, repeat: int) -> None:
    message, rcpts = wide_message(addresses)
    times = []
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        for _ in range(repeat):
            started = time.perf_counter()
            refused = client.sendmail(SENDER, rcpts[:envelope_rcpts], message)
            times.append(time.perf_counter() - started)
            if refused:
                raise SystemExit(f"bench: {len(refused)} recipients refused")
    label = f"{addresses} To/Cc addresses, {envelope_rcpts} envelope rcpt(s), {len(message)} B"
    median = statistics.median(times) * 1000
    print(f"{label:<52} {repeat:>6} msgs  median {median:>7.1f} ms  max {max(times) * 1000:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per run")
    parser.add_argument("--sessions", type=int, default=20, help="parallel SMTP sessions")
    parser.add_argument("--size", type=int, default=4096, help="message size in bytes")
    parser.add_argument("--wide-repeat", type=int, default=20, help="1,000-address sends")
    args = parser.parse_args()
    for tool in ("smtp-source", "smtp-sink"):
        if not (SBIN / tool).exists():
            raise SystemExit(f"bench: {SBIN / tool} missing: install the Debian package postfix")
    print(f"# ccguard relay throughput, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"# smtp-source -s {args.sessions} -m {args.messages} -l {args.size}")
    with tempfile.TemporaryDirectory(prefix="ccguard-bench-") as tmp:
        sink = Sink(Path(tmp))
        try:
            throughput(sink, sink.port, "smtp-source -> smtp-sink (no ccguard)", args, False)
            with ccguard(Path(tmp), sink.port) as port:
                throughput(sink, port, "via ccguard, new connection per message", args, False)
                throughput(sink, port, "via ccguard, connections reused (-d)", args, True)
                wide_latency(port, 1000, 1000, args.wide_repeat)
                wide_latency(port, 1000, 1, args.wide_repeat)
        finally:
            stop(sink.proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
