"""One ccguard container of the image under test, on the host network, loopback only.

It runs the shipped ``config/container.toml`` mounted read-only, as an operator
would, with three environment overrides: the container shares the host's network
(the CI daemon has no bridge), so the listeners bind 127.0.0.1 on free ports instead
of 0.0.0.0:10025/8025, and the upstream is the test's recording server.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import smtplib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.helpers.docker import Docker
from tests.helpers.process import ROOT, free_port

__all__ = ["STOP_TIMEOUT", "Container", "running_container"]

#: Longer than [smtp] shutdown_grace (30 s in config/container.toml), as documented.
STOP_TIMEOUT = 35


@dataclass
class Container:
    """A started container: its name, volume and loopback ports."""

    docker: Docker
    name: str
    volume: str
    smtp_port: int
    admin_port: int

    def exec(self, *args: str, input: str | None = None) -> Any:
        """``docker exec`` in the container (as its ccguard user)."""
        extra = ["-i"] if input is not None else []
        return self.docker.run("exec", *extra, self.name, *args, input=input, check=False)

    def logs(self) -> str:
        """Everything the container wrote to stdout and stderr so far."""
        result = self.docker.run("logs", self.name)
        return result.stdout + result.stderr

    def inspect(self) -> dict[str, Any]:
        """``docker inspect`` of the container."""
        data: list[dict[str, Any]] = json.loads(self.docker.run("inspect", self.name).stdout)
        return data[0]

    def smtp(self) -> smtplib.SMTP:
        """An SMTP client connected to the container's listener."""
        return smtplib.SMTP("127.0.0.1", self.smtp_port, timeout=30)


def _wait_for_listener(container: Container, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not container.inspect()["State"]["Running"]:
            raise AssertionError(f"container exited:\n{container.logs()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", container.admin_port), timeout=1):
                pass
            with socket.create_connection(("127.0.0.1", container.smtp_port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"container not listening after {timeout}s:\n{container.logs()[-3000:]}")


@contextlib.contextmanager
def running_container(
    docker: Docker, image: str, upstream_port: int, env: dict[str, str] | None = None
) -> Iterator[Container]:
    """``docker run -d`` the image with config/container.toml; removed (with its
    volume) afterwards, whatever happened."""
    name = f"ccguard-test-{secrets.token_hex(4)}"
    container = Container(docker, name, f"{name}-data", free_port(), free_port())
    overrides = {
        "CCGUARD_SMTP__LISTEN": f"127.0.0.1:{container.smtp_port}",
        "CCGUARD_ADMIN__LISTEN": f"127.0.0.1:{container.admin_port}",
        "CCGUARD_UPSTREAM__HOST": "127.0.0.1",
        "CCGUARD_UPSTREAM__PORT": str(upstream_port),
        "CCGUARD_UPSTREAM__STARTTLS": "off",
        "CCGUARD_LOGGING__HASH_KEY": "container-test-key",
        **(env or {}),
    }
    args = ["run", "-d", "--name", name, "--network", "host"]
    args += ["--stop-timeout", str(STOP_TIMEOUT), "--health-interval", "1s"]
    args += ["-v", f"{ROOT / 'config' / 'container.toml'}:/etc/ccguard/ccguard.toml:ro"]
    args += ["-v", f"{container.volume}:/var/lib/ccguard"]
    for key, value in overrides.items():
        args += ["-e", f"{key}={value}"]
    docker.run(*args, image)
    try:
        _wait_for_listener(container)
        yield container
    finally:
        docker.run("rm", "-f", "-v", name, check=False)
        docker.run("volume", "rm", "-f", container.volume, check=False)
