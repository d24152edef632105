"""The image under test, built once per run on a real Docker daemon (never skipped)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.docker import SUMMARY, BuiltImage, Docker, build_image, docker_daemon


@pytest.fixture(scope="session")
def docker() -> Iterator[Docker]:
    """The machine's Docker daemon, or a private one for this run."""
    with docker_daemon() as daemon:
        yield daemon
        daemon.run("image", "prune", "-f", check=False)  # older builds' dangling layers


@pytest.fixture(scope="session")
def image(docker: Docker) -> BuiltImage:
    """``docker build`` of the repository's Dockerfile (base: python:3.11-slim, or the
    debootstrap stand-in when no registry can be reached)."""
    return build_image(docker)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which base and images the container tests used and what building cost."""
    for line in SUMMARY:
        terminalreporter.write_line(line)
