"""A full disk under the quarantine database: 451 4.3.0, and ccguard keeps serving.

A real ``ccguard serve`` keeps its database on a small tmpfs (the tests run as
root), which a filler file then fills to the last byte.  Where a tmpfs cannot
be mounted, the test falls back to a file-size limit (RLIMIT_FSIZE) on the
process, and its id says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import resource
import smtplib
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.process import free_port, start_ccguard, wait_for_port
from tests.helpers.upstream import RecordingUpstream

SIZE = 1024 * 1024  # of the tmpfs
FSIZE_LIMIT = 256 * 1024  # the fallback: no file of the process may grow past this
MAX_MESSAGES = 200
GUESTS = ("g1@example.com", "g2@example.net", "g3@example.com")
BULK = (
    b"From: alice@example.org\r\nTo: g1@example.com, g2@example.net, g3@example.com\r\n"
    b"Subject: training\r\n\r\n" + b"A long enough body to need a fresh database page.\r\n" * 200
)
STORE_FAILED = (451, b"4.3.0 Quarantine store unavailable, try again later")


def _mount(path: Path) -> bool:
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(path)],
        capture_output=True,
    )
    return result.returncode == 0


def _umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=True, capture_output=True)


def _can_mount_tmpfs() -> bool:
    with tempfile.TemporaryDirectory(prefix="ccguard-tmpfs-probe-") as probe:
        if not _mount(Path(probe)):
            return False
        _umount(Path(probe))
        return True


HOW = "tmpfs" if _can_mount_tmpfs() else "NO-TMPFS-MOUNT-fell-back-to-RLIMIT_FSIZE"


def fill(directory: Path) -> Path:
    """Write a file into ``directory`` until the filesystem has no byte left."""
    filler = directory / "filler"
    chunk = b"\0" * 4096
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        with contextlib.suppress(OSError):
            while True:  # the last few bytes of a page
                out.write(b"\0")
    return filler


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """The folder for the database: a 1 MiB tmpfs (unmounted after the test)."""
    where = tmp_path / "db"
    where.mkdir()
    if HOW == "tmpfs":
        assert _mount(where), "tmpfs mount failed although the probe succeeded"
    try:
        yield where
    finally:
        if HOW == "tmpfs":
            _umount(where)


def config(tmp_path: Path, data_dir: Path, port: int, upstream_port: int) -> Path:
    path = tmp_path / "ccguard.toml"
    path.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{port}"\nhostname = "ccguard.test"\n'
        f'[upstream]\nhost = "127.0.0.1"\nport = {upstream_port}\nstarttls = "off"\n'
        f'[quarantine]\ndatabase = "{data_dir}/ccguard.db"\n'
        f'[admin]\nenabled = false\n[logging]\nhash_key = "test-key"\n'
        f"[notifications]\nenabled = false\n"
        f'[[policy.rules]]\nname = "bulk"\naction = "quarantine"\nmin_visible_external = 2\n'
    )
    return path


def send(port: int, message: bytes = BULK, rcpts: tuple[str, ...] = GUESTS) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        for rcpt in rcpts:
            client.rcpt(rcpt)
        return client.data(message)


def _file_size_limit() -> None:  # in the child, before ccguard starts
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def held_ids(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return sorted(r[0] for r in conn.execute("SELECT id FROM messages WHERE status='held'"))


async def until_store_fails(port: int, held: list[str], stop_after: int = MAX_MESSAGES) -> int:
    """Send quarantined messages until one is refused (its number is returned) or
    ``stop_after`` were held; each held one's id goes to ``held``."""
    for n in range(len(held), len(held) + stop_after):
        code, text = await asyncio.to_thread(send, port, BULK + f"{n}\r\n".encode())
        if code != 250:
            assert (code, text) == STORE_FAILED
            return n
        assert text.startswith(b"2.0.0 held for review as "), text
        held.append(text.decode().rsplit(" ", 1)[1])
    if stop_after == MAX_MESSAGES:
        raise AssertionError(f"the store never failed in {MAX_MESSAGES} messages")
    return -1


@pytest.mark.parametrize("how", [HOW])
async def test_full_disk_gives_451_and_ccguard_keeps_serving(
    tmp_path: Path, data_dir: Path, upstream: RecordingUpstream, how: str
) -> None:
    port = free_port()
    cfg = config(tmp_path, data_dir, port, upstream.port)
    limit = _file_size_limit if how != "tmpfs" else None
    proc = start_ccguard("serve", "--config", str(cfg), before_exec=limit)
    held: list[str] = []
    try:
        await asyncio.to_thread(wait_for_port, port, proc)
        await until_store_fails(port, held, stop_after=1)  # the store works
        filler = fill(data_dir) if how == "tmpfs" else None
        failed_at = await until_store_fails(port, held)
        # Still serving: a message that needs no store goes through ...
        plain = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nhi\r\n"
        assert (await asyncio.to_thread(send, port, plain, ("bob@example.com",)))[0] == 250
        await upstream.wait_for(1)
        if filler is not None:  # ... and once there is room, the client's retry is held
            filler.unlink()
            retry = BULK + f"{failed_at}\r\n".encode()
            code, text = await asyncio.to_thread(send, port, retry)
            assert code == 250, text
            held.append(text.decode().rsplit(" ", 1)[1])
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"Traceback" not in out + err
    assert b'"store_failed"' in err or b"store_failed" in out + err
    # Nothing lost, nothing twice: exactly the messages answered 250 are held.
    assert held_ids(data_dir / "ccguard.db") == sorted(held)
    assert upstream.messages[0].rcpt_tos == ["bob@example.com"] and len(upstream.messages) == 1
