"""A real Docker daemon for the container tests: the machine's, or a private one.

The project's CI machines have Debian's ``docker.io`` (installed by
scripts/install-system-deps.sh) but no daemon running and no reachable registry.
:func:`docker_daemon` then starts a private ``dockerd`` (vfs storage driver, no
iptables, no bridge: containers use ``--network host`` and loopback only) with its
own data-root, socket and pidfile under the CI cache folder, and stops it afterwards.
The data-root is kept, so the base image and the build cache survive between runs.
A lock file serialises test runs that share the cache folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.process import ROOT

__all__ = ["CACHE", "SUMMARY", "BuiltImage", "Docker", "build_image", "docker_daemon"]

CACHE = Path(os.environ.get("CCGUARD_CI_CACHE", "/var/cache/ccguard-ci"))
IMAGE_TAG = "ccguard:ci"
#: Lines for the end of the test run: which base and images were used, build times.
SUMMARY: list[str] = []


def _docker_binary() -> str:
    # Debian's client matches Debian's daemon (API 1.41); a newer client on PATH may
    # insist on buildx, which the Debian package does not ship.
    found = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else shutil.which("docker")
    if found is None:
        raise AssertionError("no docker client: apt-get install docker.io")
    return found


@dataclass
class Docker:
    """The docker CLI bound to one daemon (``host`` None: the default one)."""

    host: str | None
    binary: str = field(default_factory=_docker_binary)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_BUILDKIT"] = "1"
        env["DOCKER"] = self.binary
        if self.host:
            env["DOCKER_HOST"] = self.host
        return env

    def run(
        self, *args: str, input: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``docker ARGS``; fails the test with its output when it fails and ``check``."""
        result = subprocess.run(
            [self.binary, *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args[:3])} exited {result.returncode}:\n"
                f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
            )
        return result

    def answers(self) -> bool:
        """Whether the daemon answers ``docker version``."""
        return self.run("version", timeout=20, check=False).returncode == 0


def _start_private(run_dir: Path) -> subprocess.Popen[bytes]:
    run_dir.mkdir(parents=True, exist_ok=True)
    log = (run_dir / "dockerd.log").open("ab")
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    return subprocess.Popen(
        [
            dockerd,
            "--storage-driver=vfs",
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            f"--data-root={CACHE / 'docker'}",
            f"--exec-root={run_dir / 'exec'}",
            f"--pidfile={run_dir / 'dockerd.pid'}",
            f"--host=unix://{run_dir / 'docker.sock'}",
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


def _wait_ready(docker: Docker, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dockerd exited {proc.returncode}: see {CACHE}/run/dockerd.log")
        if docker.answers():
            return
        time.sleep(0.2)
    raise AssertionError(f"dockerd did not answer within {timeout}s")


def _stop_private(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def docker_daemon() -> Iterator[Docker]:
    """A daemon to test with: the machine's own if it answers, else a private one
    started (and stopped again) here. Fails, never skips, when neither works."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "tests.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        system = Docker(host=None)
        if os.environ.get("DOCKER_HOST") is None and system.answers():
            yield system
            return
        run_dir = CACHE / "run"
        private = Docker(host=f"unix://{run_dir / 'docker.sock'}")
        if private.answers():  # left by a run that was killed: ours to use
            yield private
            return
        proc = _start_private(run_dir)
        try:
            _wait_ready(private, proc)
            yield private
        finally:
            _stop_private(proc)


@dataclass(frozen=True)
class BuiltImage:
    """The image under test, what it was built on, and how long that took."""

    tag: str
    base: str
    base_seconds: float
    build_seconds: float


def _base_image(docker: Docker) -> str:
    base = os.environ.get("BASE_IMAGE", "python:3.11-slim")
    result = subprocess.run(
        [str(ROOT / "scripts" / "docker-base-image.sh"), base],
        capture_output=True,
        text=True,
        env=docker.env,
        timeout=900,
    )
    if result.returncode != 0:
        raise AssertionError(f"no base image:\n{result.stdout}\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


def build_image(docker: Docker) -> BuiltImage:
    """Build the repository's Dockerfile as :data:`IMAGE_TAG` (``docker build``, BuildKit,
    host network for pip; the machine's pip CA bundle handed in as a build secret)."""
    started = time.monotonic()
    base = _base_image(docker)
    based = time.monotonic()
    args = ["build", "--network=host", "--build-arg", f"BASE_IMAGE={base}", "-t", IMAGE_TAG]
    cert = os.environ.get("PIP_CERT")
    if cert and Path(cert).is_file():
        args += ["--secret", f"id=pip_cert,src={cert}"]
    docker.run(*args, str(ROOT), timeout=900)
    built = BuiltImage(IMAGE_TAG, base, based - started, time.monotonic() - based)
    SUMMARY.append(
        f"container image {built.tag}: base {built.base} "
        f"(ready in {built.base_seconds:.1f} s), built in {built.build_seconds:.1f} s"
    )
    return built
