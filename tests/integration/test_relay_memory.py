"""A large message costs a real ``ccguard serve`` at most 3x its size in memory.

The process's peak resident set (VmHWM in /proc/<pid>/status) is read after
the message, its resident set before; bench/memory.py measures the same with
60 MB and more scenarios (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
import smtplib
import sqlite3
from pathlib import Path

import pytest

from tests.helpers.process import free_port, start_ccguard, wait_for_port
from tests.helpers.upstream import RecordingUpstream

SIZE = 20_000_000


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def large_message(shown: list[str]) -> bytes:
    head = (
        f"From: <alice@example.org>\r\nTo: {', '.join(shown)}\r\nSubject: large\r\n\r\n"
    ).encode()
    line = b".dotted line of text, stuffed on the wire" + b"x" * 32 + b"\r\n"
    return head + line * (SIZE // len(line))


def send(port: int, sender: str, rcpts: list[str], data: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.sendmail(sender, rcpts, data)


@pytest.mark.parametrize(
    ("sender", "shown"),
    [
        ("alice@example.org", ["bob@example.com"]),  # pass
        ("alice@example.org", [f"p{n}@example.com" for n in range(12)]),  # rewrite
        ("split@example.org", [f"p{n}@example.com" for n in range(4)]),  # four copies
        ("hold@example.org", [f"p{n}@example.com" for n in range(4)]),  # quarantined
    ],
    ids=["pass", "rewrite", "split", "quarantine"],
)
async def test_peak_memory_of_one_large_message_is_under_three_times_its_size(
    tmp_path: Path, upstream: RecordingUpstream, sender: str, shown: list[str]
) -> None:
    port = free_port()
    config = tmp_path / "ccguard.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{port}"\nmax_message_size = {2 * SIZE}\n'
        f'[upstream]\nhost = "127.0.0.1"\nport = {upstream.port}\nstarttls = "off"\n'
        f'[organisation]\ninternal_domains = ["example.org"]\n'
        f'[quarantine]\ndatabase = "{tmp_path}/ccguard.db"\n'
        f'[admin]\nenabled = false\n[logging]\nhash_key = "test-key"\nlevel = "warning"\n'
        '[[policy.rules]]\nname = "split"\naction = "split"\nmin_visible_external = 3\n'
        'senders = ["split@example.org"]\n'
        '[[policy.rules]]\nname = "hold"\naction = "quarantine"\nmin_visible_external = 3\n'
        'senders = ["hold@example.org"]\n'
        '[[policy.rules]]\nname = "hide"\naction = "rewrite"\nmin_visible_external = 10\n'
    )
    data = large_message(shown)
    proc = start_ccguard("serve", "--config", str(config))
    try:
        await asyncio.to_thread(wait_for_port, port, proc)
        warm = b"From: <alice@example.org>\r\nSubject: warm-up\r\n\r\nhi\r\n"
        await asyncio.to_thread(send, port, "alice@example.org", ["bob@example.com"], warm)
        idle = status_kib(proc.pid, "VmRSS")
        await asyncio.to_thread(send, port, sender, shown, data)
        peak = status_kib(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.communicate, timeout=30)
    delivered = [m for m in upstream.messages if m.data.endswith(data[-1000:])]
    expected = {"split@example.org": len(shown), "hold@example.org": 0}.get(sender, 1)
    assert len(delivered) == expected
    if sender == "hold@example.org":
        held = sqlite3.connect(tmp_path / "ccguard.db").execute("SELECT message FROM messages")
        assert [bytes(row[0]).endswith(data) for row in held] == [True]
    growth = (peak - idle) * 1024
    assert growth <= 3 * len(data), f"peak grew by {growth / len(data):.2f}x the message"
