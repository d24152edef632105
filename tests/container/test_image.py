"""The Dockerfile, built and run for real: mail through the container, its health
check, an admin user added with ``docker exec``, a graceful ``docker stop``, and a
private data volume. A machine where Docker cannot work fails these tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections.abc import AsyncIterator
from email.message import EmailMessage

import httpx

from tests.helpers.container import STOP_TIMEOUT, Container, running_container
from tests.helpers.docker import BuiltImage, Docker
from tests.helpers.privacy import register_stream
from tests.helpers.process import ROOT
from tests.helpers.upstream import RecordingUpstream


def _message(to: list[str], subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg.set_content("Hello from the container test.\n")
    return msg.as_bytes()


@contextlib.asynccontextmanager
async def _container(
    docker: Docker, image: BuiltImage, upstream: RecordingUpstream, **env: str
) -> AsyncIterator[Container]:
    manager = running_container(docker, image.tag, upstream.port, env)
    container = await asyncio.to_thread(manager.__enter__)
    try:
        yield container
    finally:
        # Whatever the container logged goes through the suite's privacy scan too.
        register_stream(io.StringIO(await asyncio.to_thread(container.logs)))
        await asyncio.to_thread(manager.__exit__, None, None, None)


def _send(container: Container, to: list[str], subject: str) -> dict[str, object]:
    with container.smtp() as client:
        return dict(client.sendmail("alice@example.org", to, _message(to, subject)))


async def test_container_relays_mail_and_passes_its_health_check(
    docker: Docker, image: BuiltImage, upstream: RecordingUpstream
) -> None:
    async with _container(docker, image, upstream) as container:
        refused = await asyncio.to_thread(_send, container, ["bob@example.com"], "via docker")
        assert refused == {}
        [got] = await upstream.wait_for(1)
        assert got.rcpt_tos == ["bob@example.com"]
        assert b"Subject: via docker" in got.data
        assert b"by ccguard.example.org" in got.data  # the mounted config's hostname
        health = await asyncio.to_thread(container.exec, "ccguard", "health")
        assert health.returncode == 0, health.stdout + health.stderr
        assert "answered 200" in health.stdout
        await _wait_healthy(container)


async def _wait_healthy(container: Container, timeout: float = 60) -> None:
    """The image's own HEALTHCHECK (every second here) must report healthy."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        state = (await asyncio.to_thread(container.inspect))["State"]
        status = state.get("Health", {}).get("Status")
        if status == "healthy":
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"health status {status!r} after {timeout}s")


async def test_admin_user_added_with_docker_exec_reviews_held_mail(
    docker: Docker, image: BuiltImage, upstream: RecordingUpstream
) -> None:
    crowd = [f"p{n}@example.com" for n in range(12)]
    async with _container(docker, image, upstream, CCGUARD_POLICY__MODE="enforce") as container:
        assert await asyncio.to_thread(_send, container, crowd, "held in docker") == {}
        api = f"http://127.0.0.1:{container.admin_port}/api/quarantine"
        async with httpx.AsyncClient(timeout=30) as http:
            before = await http.get(api, auth=("reviewer", "s3cret-pass"))
            assert before.status_code == 401
            added = await asyncio.to_thread(
                container.exec,
                *("ccguard", "admin", "add-user", "reviewer", "--password-stdin"),
                input="s3cret-pass\n",
            )
            assert added.returncode == 0, added.stdout + added.stderr
            after = await http.get(api, auth=("reviewer", "s3cret-pass"))
        assert after.status_code == 200
        [held] = after.json()["items"]
        assert held["rule"] == "hold-mass-disclosure"
        assert upstream.messages == []


def _open_transaction(container: Container) -> object:
    client = container.smtp()
    client.ehlo("client.example.org")
    client.mail("alice@example.org")
    client.rcpt("bob@example.com")
    return client


async def _wait_for_log(container: Container, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in await asyncio.to_thread(container.logs):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in the container's log after {timeout}s")
        await asyncio.sleep(0.1)


async def test_docker_stop_lets_the_open_transaction_finish_and_exits_zero(
    docker: Docker, image: BuiltImage, upstream: RecordingUpstream
) -> None:
    async with _container(docker, image, upstream) as container:
        client = await asyncio.to_thread(_open_transaction, container)
        started = time.monotonic()
        stopping = asyncio.ensure_future(asyncio.to_thread(docker.run, "stop", container.name))
        await _wait_for_log(container, "ccguard stopping")
        code, reply = await asyncio.to_thread(
            client.data,  # type: ignore[attr-defined]
            _message(["bob@example.com"], "finished during stop"),
        )
        assert code == 250, reply
        await asyncio.to_thread(client.quit)  # type: ignore[attr-defined]
        await stopping
        elapsed = time.monotonic() - started
        state = (await asyncio.to_thread(container.inspect))["State"]
        logs = await asyncio.to_thread(container.logs)
    assert state["ExitCode"] == 0, logs[-2000:]
    assert elapsed < STOP_TIMEOUT  # stopped by itself, not killed at the timeout
    assert "ccguard stopped" in logs
    assert [m.rcpt_tos for m in upstream.messages] == [["bob@example.com"]]


def _sh(docker: Docker, image: BuiltImage, volume: str, script: str) -> str:
    args = ["run", "--rm", "--network", "none", "-v", f"{volume}:/var/lib/ccguard"]
    return str(docker.run(*args, "--entrypoint", "sh", image.tag, "-c", script).stdout)


async def test_data_volume_is_private_and_holds_no_dot_files(
    docker: Docker, image: BuiltImage, upstream: RecordingUpstream
) -> None:
    fresh = f"ccguard-test-fresh-{id(upstream):x}"
    try:
        out = await asyncio.to_thread(
            _sh, docker, image, fresh, "id -u; stat -c '%a %U' /var/lib/ccguard; ls -A ."
        )
    finally:
        await asyncio.to_thread(docker.run, "volume", "rm", "-f", fresh, check=False)
    assert out.split("\n") == ["10025", "700 ccguard", ""]
    async with _container(docker, image, upstream) as container:
        await asyncio.to_thread(_send, container, ["bob@example.com"], "make files")
        listing = await asyncio.to_thread(
            container.exec, "sh", "-c", "cd /var/lib/ccguard && stat -c '%a %n' * .[!.]* 2>&1"
        )
    lines = listing.stdout.splitlines()
    assert "600 ccguard.db" in lines, listing.stdout
    assert not [line for line in lines if " ." in line and "No such file" not in line]


def test_image_is_labelled_and_stops_on_sigterm(docker: Docker, image: BuiltImage) -> None:
    [meta] = json.loads(docker.run("image", "inspect", image.tag).stdout)
    config = meta["Config"]
    labels = config["Labels"]
    for key in ("title", "version", "licenses", "source", "description"):
        assert labels[f"org.opencontainers.image.{key}"], key
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert config["StopSignal"] == "SIGTERM"
    assert config["User"] == "10025:10025"
    assert config["Healthcheck"]["Test"] == ["CMD", "ccguard", "health", "--timeout", "5"]


def test_shipped_container_config_is_valid_inside_the_image(
    docker: Docker, image: BuiltImage
) -> None:
    mount = f"{ROOT / 'config' / 'container.toml'}:/etc/ccguard/ccguard.toml:ro"
    args = ["run", "--rm", "--network", "none", "-v", mount, image.tag]
    result = docker.run(*args, "config", "check")
    assert "configuration OK" in result.stdout
