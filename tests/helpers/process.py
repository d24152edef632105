"""Run ``ccguard`` as a real process, the way an administrator does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["ROOT", "free_port", "run_ccguard", "start_ccguard", "wait_for_port"]

ROOT = Path(__file__).resolve().parents[2]


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCGUARD_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra or {})
    return env


def run_ccguard(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``python -m relay ARGS`` to completion; text output captured."""
    return subprocess.run(
        [sys.executable, "-m", "relay", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        env=_env(env),
        cwd=cwd or ROOT,
        timeout=timeout,
    )


def start_ccguard(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    before_exec: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """``python -m relay ARGS`` in the background; stdout and stderr captured.

    ``before_exec`` runs in the child first (e.g. to set a resource limit)."""
    return subprocess.Popen(
        [sys.executable, "-m", "relay", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(env),
        cwd=cwd or ROOT,
        preexec_fn=before_exec,
    )


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, and that this test
    run has not handed out before: the kernel may give a port it just freed again, and
    two servers of one test configured with the same port make one fail to listen."""
    for _ in range(1000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no loopback port left that was not handed out already")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """Wait until something accepts on 127.0.0.1:``port``; fail if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process exited {proc.returncode}: {out!r} {err!r}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")
