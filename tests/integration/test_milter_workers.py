"""``[smtp] workers = 2`` with ``[milter] listen``: the supervisor binds the milter
socket once (``inet:`` or ``unix:``) and both workers serve it.

Each worker used to bind ``[milter] listen`` itself: on ``inet:`` the second one
found the port in use and the whole set failed to start; on ``unix:`` the second
removed the first one's socket as stale, so the first worker served nothing.
Here each worker in turn is the only one that can accept (the other is
SIGSTOPped, so it takes no connection): both must answer milter sessions from
the one address, with the verdict of the policy.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import struct
import tempfile
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.process import free_port
from tests.helpers.relay import settings_for
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import wait_until
from tests.helpers.workers import WorkersRelay, running_workers, serve_until_exit
from tests.integration.test_milter_budget import Mta
from tests.integration.test_milter_protocol import frame, negotiate

POLICY = {"rules": [{"name": "refuse-many", "min_visible_external": 3, "action": "reject"}]}
BULK = [f"p{i}@example.com" for i in range(4)]
CLEAN = ["bob@example.com"]

Opener = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


async def milter_message(opener: Opener, to: list[str]) -> bytes:
    """One milter connection as an MTA drives it, one message ``To: to``; the final answer."""
    mta = Mta(*await opener())
    try:
        mta.writer.write(negotiate())
        assert (await mta.answer())[0:1] == b"O"
        address = b"4" + struct.pack("!H", 2525) + b"127.0.0.1\0"
        mta.writer.write(frame(b"C", b"client.example.org\0" + address))
        mta.writer.write(frame(b"H", b"client.example.org\0"))
        mta.writer.write(frame(b"M", b"<alice@example.org>\0"))
        for rcpt in to:
            mta.writer.write(frame(b"R", f"<{rcpt}>\0".encode()))
        headers = {"From": "alice@example.org", "To": ", ".join(to), "Subject": "workers"}
        for name, value in headers.items():
            mta.writer.write(frame(b"L", f"{name}\0 {value}\0".encode()))
        mta.writer.write(frame(b"N") + frame(b"B", b"hello\r\n"))
        return await mta.end()
    finally:
        mta.close()


async def each_worker_alone(relay: WorkersRelay, opener: Opener) -> dict[int, list[bytes]]:
    """Worker index → the answers to a bulk and a clean message while the other
    worker is stopped (it takes no connection: the answering one must)."""
    pids = relay.worker_pids()
    answers: dict[int, list[bytes]] = {}
    for serving, other in ((0, 1), (1, 0)):
        os.kill(pids[other], signal.SIGSTOP)
        try:
            answers[serving] = [await milter_message(opener, to) for to in (BULK, CLEAN)]
        finally:
            os.kill(pids[other], signal.SIGCONT)
    assert relay.worker_pids() == pids  # nobody died or was restarted
    return answers


def readyz(relay: WorkersRelay) -> dict[str, Any]:
    url = f"http://127.0.0.1:{relay.admin_port}/readyz"
    with urllib.request.urlopen(url, timeout=10) as response:
        checks: dict[str, Any] = json.loads(response.read())["checks"]
        return checks


def check_served_by_both(relay: WorkersRelay, answers: dict[int, list[bytes]], where: str) -> None:
    """Each worker answered its bulk and clean message as the policy says, logged
    it, and logged that it listens on ``where``; nobody failed to bind or died."""
    for worker in (0, 1):
        bulk, clean = answers[worker]
        assert bulk.startswith(b"y550 5.7.1 "), (worker, bulk)
        assert clean == b"c", (worker, clean)
    events = relay.events()
    milter = [e for e in events if e.get("event") == "transaction" and e.get("front") == "milter"]
    served = sorted((e["worker"], e["action"]) for e in milter)
    assert served == [(0, "pass"), (0, "reject"), (1, "pass"), (1, "reject")], served
    listening = sorted(
        (e["worker"], e["listen"]) for e in events if e.get("event") == "milter listening"
    )
    assert listening == [(0, where), (1, where)], listening
    text = relay.log_text()
    assert '"worker died"' not in text and "already in use" not in text.lower(), text


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder for a unix socket (pytest's tmp_path can pass the 108-byte path limit)."""
    folder = Path(tempfile.mkdtemp(prefix="ccg-mw-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def test_two_workers_serve_one_inet_milter_port(
    upstream: RecordingUpstream, tmp_path: Path
) -> None:
    port = free_port()
    milter = {"listen": f"inet:127.0.0.1:{port}"}
    settings = settings_for(upstream.port, milter=milter, policy=POLICY)

    async def opener() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port)

    async with running_workers(settings, 2, tmp_path) as relay:
        answers = await each_worker_alone(relay, opener)
        checks = await asyncio.to_thread(readyz, relay)
    assert relay.proc.returncode == 0, relay.log_text()
    assert checks["milter"] == {"ok": True, "reason": f"listening on inet:127.0.0.1:{port}"}
    check_served_by_both(relay, answers, f"inet:127.0.0.1:{port}")


async def test_two_workers_serve_one_unix_milter_socket_removed_on_stop(
    upstream: RecordingUpstream, tmp_path: Path, short_dir: Path
) -> None:
    path = short_dir / "milter.sock"
    milter = {"listen": f"unix:{path}", "socket_mode": "0640"}
    settings = settings_for(upstream.port, milter=milter, policy=POLICY)

    async def opener() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(str(path))

    async with running_workers(settings, 2, tmp_path) as relay:
        mode = stat.S_IMODE(path.stat().st_mode)
        answers = await each_worker_alone(relay, opener)
        checks = await asyncio.to_thread(readyz, relay)
    assert relay.proc.returncode == 0, relay.log_text()
    assert not path.exists()  # the supervisor removed it
    assert mode == 0o640
    assert checks["milter"] == {"ok": True, "reason": f"listening on unix:{path}"}
    check_served_by_both(relay, answers, f"unix:{path}")


async def test_a_file_at_the_unix_path_stops_the_supervisor_and_is_kept(
    upstream: RecordingUpstream, short_dir: Path
) -> None:
    regular = short_dir / "milter.sock"
    regular.write_text("keep me")
    settings = settings_for(upstream.port, milter={"listen": f"unix:{regular}"})
    done = await serve_until_exit(settings, 2, short_dir)
    assert done.returncode == 1, done.stdout + done.stderr
    assert '"cannot start"' in done.stdout and "is not a socket" in done.stdout, done.stdout
    assert '"workers started"' not in done.stdout
    assert regular.read_text() == "keep me"


async def test_a_restarted_worker_serves_the_same_unix_socket(
    upstream: RecordingUpstream, tmp_path: Path, short_dir: Path
) -> None:
    path = short_dir / "milter.sock"
    settings = settings_for(upstream.port, milter={"listen": f"unix:{path}"}, policy=POLICY)

    async def opener() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(str(path))

    async with running_workers(settings, 2, tmp_path) as relay:
        inode = path.stat().st_ino
        old = relay.worker_pids()
        os.kill(old[1], signal.SIGKILL)
        await wait_until(
            lambda: '"worker restarted"' in relay.log_text(),
            lambda: f"worker 1 not restarted:\n{relay.log_text()}",
        )
        answers = await each_worker_alone(relay, opener)
        same = path.stat().st_ino == inode
    assert same  # neither the dead worker nor its successor replaced the socket
    assert answers[1] == answers[0] and answers[1][1] == b"c", answers
    assert not path.exists()
