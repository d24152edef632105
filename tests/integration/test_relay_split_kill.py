"""Split exactly once across a SIGKILL of a real ``ccguard serve`` after a copy's 250.

A kill in the instant between the upstream's 250 and the ledger commit (a few
milliseconds, see bench/split_kill.py) cannot be hit deterministically, and
there a duplicate remains possible by design (docs/actions.md, "The remaining
window").  What is deterministic, and tested here: ccguard says nothing more
to the upstream after a 250 (no QUIT, RSET, next MAIL, new connection) before
that copy's ledger rows are committed, so a kill at its next word to the
upstream leaves every served recipient recorded, and the client's retry sends
nobody a second copy and leaves nobody out.
"""

from __future__ import annotations

import asyncio
import os
import smtplib
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.actions.split import delivered_id
from tests.helpers.kill_upstream import KillingUpstream
from tests.helpers.process import free_port, start_ccguard, wait_for_port

EXTERNAL = ["g1@example.com", "g2@example.net", "g3@example.com"]
INTERNAL = ["ia@example.org", "ib@example.org"]
RCPTS = EXTERNAL + INTERNAL  # copies: g1, g2, g3, then one for both internal recipients
MESSAGE = (
    f"From: Ann <ann@example.org>\r\nTo: {', '.join(EXTERNAL)}\r\nCc: {', '.join(INTERNAL)}\r\n"
    "Subject: Training week\r\nMessage-ID: <kill-1@example.org>\r\n\r\nHello everyone.\r\n"
).encode()


def write_config(
    tmp_path: Path, port: int, upstream_port: int, pool_size: int, workers: int = 1
) -> Path:
    config = tmp_path / "ccguard.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{port}"\nhostname = "ccguard.test"\nworkers = {workers}\n'
        f'[upstream]\nhost = "127.0.0.1"\nport = {upstream_port}\nstarttls = "off"\n'
        f"pool_size = {pool_size}\n"
        f'[organisation]\ninternal_domains = ["example.org"]\n'
        # The killed attempt's claim blocks its retry until its lease expires.
        f'[quarantine]\ndatabase = "{tmp_path}/ccguard.db"\nclaim_lease = 2\n'
        f'[admin]\nenabled = false\n[logging]\nhash_key = "test-key"\n'
        f'[[policy.rules]]\nname = "split-all"\nmin_visible_external = 2\naction = "split"\n'
    )
    return config


def attempt(port: int) -> int | None:
    """The reply code to end of DATA, or None when the connection was lost."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("mua.example.org")
            client.mail("ann@example.org")
            for rcpt in RCPTS:
                client.rcpt(rcpt)
            return client.data(MESSAGE)[0]
    except (smtplib.SMTPServerDisconnected, ConnectionError):
        return None


@pytest.fixture
async def killer(tmp_path: Path) -> AsyncIterator[KillingUpstream]:
    up = await KillingUpstream(tmp_path / "ccguard.db").start()
    try:
        yield up
    finally:
        await up.stop()


async def serve(config: Path, port: int) -> subprocess.Popen[bytes]:
    # Its own process group: with workers, the whole tree is killed at once.
    proc = start_ccguard("serve", "--config", str(config), before_exec=os.setsid)
    await asyncio.to_thread(wait_for_port, port, proc)
    return proc


class ProcessTree:
    """A victim for :class:`KillingUpstream`: SIGKILL reaches the supervisor and every
    worker at once (a negative pid is the process group)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    @property
    def pid(self) -> int:
        return -self.proc.pid

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    proc.communicate()


@pytest.mark.parametrize("workers", [1, 2], ids=["workers=1", "workers=2"])
@pytest.mark.parametrize(
    ("pool_size", "kill_after", "next_word"),
    [
        (0, 2, "QUIT"),  # no pool: the copy's connection is closed with QUIT
        (0, 4, "QUIT"),  # the internal copy: two recipients, one transaction
        (4, 2, "MAIL"),  # pooled: the next copy's MAIL FROM on the same connection
    ],
)
async def test_sigkill_at_ccguards_next_word_after_a_250_duplicates_nobody(
    tmp_path: Path,
    killer: KillingUpstream,
    pool_size: int,
    kill_after: int,
    next_word: str,
    workers: int,
) -> None:
    port = free_port()
    config = write_config(tmp_path, port, killer.port, pool_size, workers)
    first = await serve(config, port)
    try:
        killer.arm(ProcessTree(first), kill_after)  # type: ignore[arg-type]
        assert await asyncio.to_thread(attempt, port) is None  # killed mid-split
    finally:
        stop(first)
    assert killer.killed_at == next_word
    served = RCPTS[: kill_after - 1] + (INTERNAL if kill_after == 4 else [RCPTS[kill_after - 1]])
    # Every recipient who had a copy was in the ledger file when ccguard spoke again.
    assert {delivered_id(r) for r in served} <= killer.ledger_at_kill
    second = await serve(config, port)  # same database: the client's queue retries
    try:
        codes = [await asyncio.to_thread(attempt, port)]
    finally:
        stop(second)
    assert codes == [250]
    assert killer.copies == Counter(RCPTS)  # nobody twice, nobody left out
