"""deploy/compose.yaml brought up for real with docker-compose, on the test's daemon.

Images the registry would give (postgres, haproxy, prom/prometheus) are used when
present or pullable; otherwise stand-ins are built from the Debian base with
Debian's packages (tests/container/standins/, labelled ``ccguard.ci.standin``) and
tagged with the names compose.yaml uses. Grafana has no Debian package, so the
bring-up leaves it out. The host ports are free loopback ports (``STACK_*``).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from typing import Any

import yaml

from tests.helpers.docker import BuiltImage, Docker
from tests.helpers.process import ROOT, free_port

__all__ = ["STANDINS", "Stack"]

COMPOSE = ROOT / "deploy" / "compose.yaml"
PROJECT = "ccguard-ci"
#: compose service → folder of its stand-in under tests/container/standins/
STANDINS = {"postgres": "postgres", "haproxy": "haproxy", "prometheus": "prometheus"}
#: What the CI bring-up starts (their dependencies, postgres and sink, come along).
SERVICES = ("ccguard1", "ccguard2", "haproxy", "prometheus")


@dataclass
class Stack:
    """One bring-up of the stack: its ports, and where each image came from."""

    docker: Docker
    image: BuiltImage
    ports: dict[str, int] = field(
        default_factory=lambda: {
            name: free_port() for name in ("SMTP", "ADMIN1", "ADMIN2", "PROMETHEUS", "GRAFANA")
        }
    )
    origins: dict[str, str] = field(default_factory=dict)

    def compose(self, *args: str, input: str | None = None, timeout: float = 300) -> Any:
        """``docker-compose -p ccguard-ci -f deploy/compose.yaml ARGS``."""
        env = self.docker.env | {f"STACK_{k}_PORT": str(v) for k, v in self.ports.items()}
        return subprocess.run(
            ["docker-compose", "-p", PROJECT, "-f", str(COMPOSE), *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )

    def _checked(self, *args: str, input: str | None = None) -> str:
        result = self.compose(*args, input=input)
        if result.returncode != 0:
            raise AssertionError(f"docker-compose {args[0]} failed:\n{result.stderr[-3000:]}")
        return str(result.stdout)

    def _image_of(self, service: str) -> str:
        resolved = yaml.safe_load(self._checked("config"))
        return str(resolved["services"][service]["image"])

    def _provide(self, service: str) -> None:
        tag = self._image_of(service)
        found = self.docker.run("image", "inspect", tag, check=False)
        if found.returncode == 0 and "ccguard.ci.standin" not in found.stdout:
            self.origins[tag] = "present"
        elif found.returncode != 0 and self.docker.run("pull", tag, check=False).returncode == 0:
            self.origins[tag] = "pulled"
        else:  # (re)build: cached, and kept in step with its Dockerfile
            folder = ROOT / "tests" / "container" / "standins" / STANDINS[service]
            self.docker.run(
                *("build", "--network=host", "--build-arg", f"BASE_IMAGE={self.image.base}"),
                *("--label", "ccguard.ci.standin=debian", "-t", tag, str(folder)),
                timeout=900,
            )
            self.origins[tag] = "stand-in built from Debian packages"

    def up(self) -> None:
        """Provide every image, then ``up -d`` the CI services (no Grafana)."""
        self.compose("down", "-v", "--remove-orphans")  # what a killed run left
        self.docker.run("tag", self.image.tag, "ccguard:latest")
        for service in STANDINS:
            self._provide(service)
        self._checked("up", "-d", "--no-build", *SERVICES)

    def down(self) -> None:
        """Stop and remove every container, network and volume of the stack."""
        self.compose("down", "-v", "--remove-orphans")

    def exec(self, service: str, *args: str, input: str | None = None) -> str:
        """``docker-compose exec -T SERVICE ARGS``; its stdout."""
        return self._checked("exec", "-T", service, *args, input=input)

    def logs(self, service: str) -> str:
        """What the service's container wrote so far."""
        return self._checked("logs", "--no-color", service)

    def state(self, service: str) -> dict[str, Any]:
        """``docker inspect`` State of the service's container."""
        container = self._checked("ps", "-q", service).strip()
        data = json.loads(self.docker.run("inspect", container).stdout)
        state: dict[str, Any] = data[0]["State"]
        return state
