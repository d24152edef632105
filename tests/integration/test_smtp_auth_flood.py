"""A flood of wrong SMTP AUTH passwords from many addresses does not lock admins out.

A real ``ccguard serve`` process with SMTP AUTH (in clear: loopback only) and
the admin API; the attackers are real SMTP sessions bound to many loopback
source addresses (127.0.1.0/24), the reviewer a real HTTP client.  Password
checks for the two run on separate pools, and a global failure budget turns
the guessing away with 454 before any hashing.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from relay.credentials import UserDB
from tests.helpers.process import free_port, start_ccguard, wait_for_port
from tests.helpers.smtp_auth import OUTSIDE, PASSWORD, make_users_file

REVIEWER, REVIEWER_PASSWORD = "rev", "review-Pa55word"
WRONG = base64.b64encode(b"\0app1\0not-the-password")
RIGHT = base64.b64encode(f"\0app1\0{PASSWORD}".encode())


class Ccguard:
    def __init__(self, smtp: int, admin: int, proc: subprocess.Popen[bytes]) -> None:
        self.smtp, self.admin, self.proc = smtp, admin, proc

    def admin_status(self) -> int:
        token = base64.b64encode(f"{REVIEWER}:{REVIEWER_PASSWORD}".encode()).decode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.admin}/api/quarantine",
            headers={"Authorization": "Basic " + token},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code


@pytest.fixture
def ccguard(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Ccguard]:
    budget = getattr(request, "param", 100_000)
    smtp, admin = free_port(), free_port()
    UserDB(tmp_path / "admins.json").set_password(REVIEWER, REVIEWER_PASSWORD)
    config = tmp_path / "ccguard.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{smtp}"\nhostname = "ccguard.test"\n'
        f"allowed_networks = {OUTSIDE!r}\n".replace("'", '"')
        + f'[smtp.auth]\nusers_file = "{make_users_file(tmp_path / "smtp.json")}"\n'
        f"allow_plaintext = true\nmax_failures_per_minute = {budget}\n"
        f"[limits]\nmax_connections = 1000\nmax_connections_per_ip = 50\n"
        f'[upstream]\nhost = "127.0.0.1"\nport = {free_port()}\nstarttls = "off"\n'
        f'[quarantine]\ndatabase = "{tmp_path}/ccguard.db"\n'
        f'[admin]\nlisten = "127.0.0.1:{admin}"\nusers_file = "{tmp_path}/admins.json"\n'
        f'[logging]\nhash_key = "test-key"\n'
    )
    proc = start_ccguard("serve", "--config", str(config))
    # Thousands of log lines: read them as they come, or ccguard blocks on a full pipe.
    drains = [_drain(proc.stdout), _drain(proc.stderr)]
    try:
        wait_for_port(smtp, proc)
        wait_for_port(admin, proc)
        yield Ccguard(smtp, admin, proc)
    finally:
        proc.terminate()
        proc.wait(30)
        for drain in drains:
            drain.join(10)


def _drain(stream: IO[bytes] | None) -> threading.Thread:
    assert stream is not None
    thread = threading.Thread(target=lambda: [None for _ in iter(lambda: stream.read(65536), b"")])
    thread.start()
    return thread


def _auth_session(port: int, source: str, lines: list[bytes]) -> list[bytes]:
    """One SMTP session from ``source``: EHLO, the AUTH PLAIN ``lines``, QUIT; the replies."""
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as s:
        reader = s.makefile("rb")
        reader.readline()
        s.sendall(b"EHLO attacker.example.net\r\n")
        while reader.readline()[3:4] == b"-":
            pass
        replies = []
        for line in lines:
            s.sendall(b"AUTH PLAIN " + line + b"\r\n")
            replies.append(reader.readline().rstrip())
        s.sendall(b"QUIT\r\n")
        return replies


class Flood:
    """Wrong passwords from ``sources`` addresses, each in its own thread, until
    stopped (at most ``rounds`` sessions per address)."""

    def __init__(self, port: int, sources: int, rounds: int = 40) -> None:
        self.port, self.rounds = port, rounds
        self.stop = threading.Event()
        self.replies: Counter[bytes] = Counter()
        self.lock = threading.Condition()
        self.threads = [
            threading.Thread(target=self._run, args=(f"127.0.1.{i}",), daemon=True)
            for i in range(1, sources + 1)
        ]

    def _run(self, source: str) -> None:
        for _ in range(self.rounds):
            if self.stop.is_set():
                return
            try:
                got = _auth_session(self.port, source, [WRONG] * 3)
            except OSError:
                continue
            with self.lock:
                self.replies.update(reply[:3] for reply in got)
                self.lock.notify_all()

    def wait_for_replies(self, count: int, timeout: float = 60) -> None:
        with self.lock:
            assert self.lock.wait_for(lambda: sum(self.replies.values()) >= count, timeout)

    def __enter__(self) -> Flood:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def test_admin_logins_succeed_while_smtp_auth_is_flooded(ccguard: Ccguard) -> None:
    with Flood(ccguard.smtp, sources=150) as flood:
        flood.wait_for_replies(300)  # the flood is in full swing
        codes = [ccguard.admin_status() for _ in range(10)]
        busy = flood.replies[b"454"]
    assert codes == [200] * 10
    assert flood.replies[b"535"] > 0 and busy > 0  # the SMTP side was swamped meanwhile


@pytest.mark.parametrize("ccguard", [5], indirect=True)
def test_the_global_failure_budget_answers_454_without_checking(ccguard: Ccguard) -> None:
    for i in range(1, 6):  # five clean addresses, one wrong password each: all checked
        assert _auth_session(ccguard.smtp, f"127.0.2.{i}", [WRONG])[0].startswith(b"535 ")
    started = time.monotonic()
    # A sixth address, even with the right password, is turned away for now, unchecked.
    reply = _auth_session(ccguard.smtp, "127.0.2.6", [RIGHT])[0]
    assert reply == b"454 4.7.0 Too many failed authentication attempts, try again later"
    assert time.monotonic() - started < 5
    assert ccguard.admin_status() == 200  # admin logins have their own throttle and pool
