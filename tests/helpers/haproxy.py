"""A private HAProxy (Debian package ``haproxy``) in TCP mode in front of a test ccguard."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.process import free_port

__all__ = ["HAPROXY", "Frontend", "Haproxy", "free_port", "running_haproxy"]

HAPROXY = "/usr/sbin/haproxy"  # missing means failure, not skip


@dataclass(frozen=True)
class Frontend:
    """One listening port of the HAProxy; ``set_src`` makes it claim another client IP
    (``tcp-request connection set-src``), so a loopback test can play an outside client."""

    port: int
    set_src: str | None = None
    send_proxy: str = "send-proxy-v2"
    #: HAProxy health checks of ccguard every 100 ms (they send a v2 LOCAL header).
    check: bool = False
    #: Another ccguard port than the one given to :func:`running_haproxy` (its ``tls_listen``).
    backend_port: int | None = None


class Haproxy:
    """The running HAProxy: its admin socket, for what its health checks found."""

    def __init__(self, stats_socket: Path) -> None:
        self._socket = stats_socket

    def command(self, line: str) -> str:
        """One command on the stats socket (``show stat``), and HAProxy's answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(self._socket))
            sock.sendall(line.encode() + b"\n")
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
        return got.decode()

    def check_status(self, frontend: int) -> str:
        """The last health check's result of frontend ``frontend``'s ccguard (``L4OK``)."""
        rows = [r.split(",") for r in self.command("show stat").splitlines()]
        header = rows[0]
        for row in rows[1:]:
            if row[:2] == [f"b{frontend}", "s"]:
                return row[header.index("check_status")]
        raise AssertionError(f"no server for frontend {frontend}")


def _config(frontends: Sequence[Frontend], backend_port: int, probe_port: int, stats: Path) -> str:
    lines = [
        "global",
        "    maxconn 4000",
        f"    stats socket {stats} level operator",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 60s",
        # A frontend that only accepts: the readiness probe touches no ccguard.
        "frontend probe",
        f"    bind 127.0.0.1:{probe_port}",
        "    tcp-request connection reject",
    ]
    for i, front in enumerate(frontends):
        lines += [f"frontend f{i}", f"    bind 127.0.0.1:{front.port}"]
        if front.set_src:
            lines.append(f"    tcp-request connection set-src ipv4({front.set_src})")
        lines += [
            f"    default_backend b{i}",
            f"backend b{i}",
            f"    server s 127.0.0.1:{front.backend_port or backend_port} {front.send_proxy}"
            + (" check inter 100ms" if front.check else ""),
        ]
    return "\n".join(lines) + "\n"


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # polling for the bind, bounded by the deadline
    raise RuntimeError("haproxy did not start listening")


@contextmanager
def running_haproxy(frontends: Sequence[Frontend], backend_port: int) -> Iterator[Haproxy]:
    """Run ``haproxy -db`` with one frontend per item, all to ccguard on ``backend_port``
    (unless a frontend names its own)."""
    folder = Path(tempfile.mkdtemp(prefix="ccguard-haproxy-"))
    probe = free_port()
    cfg = folder / "haproxy.cfg"
    cfg.write_text(_config(frontends, backend_port, probe, folder / "stats.sock"))
    check = subprocess.run([HAPROXY, "-c", "-q", "-f", str(cfg)], capture_output=True, timeout=30)
    assert check.returncode == 0, check.stderr.decode()
    proc = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_listening(probe, proc, 15)
        yield Haproxy(folder / "stats.sock")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(folder, ignore_errors=True)
