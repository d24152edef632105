"""``ccguard serve`` with ``[smtp] workers = N`` as a real process tree, from a Settings object.

:func:`running_workers` writes the settings as a TOML file (free loopback ports
instead of port 0, which every worker would resolve differently), starts the
supervisor, waits until it logged that every worker is ready, and on exit sends
SIGTERM and waits for the whole tree to stop.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay.settings import Settings
from tests.helpers.process import ROOT, free_port
from tests.helpers.waiting import wait_until

__all__ = ["WorkersRelay", "children", "running_workers", "serve_until_exit", "toml_text"]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {_value(v)}" for k, v in value.items())
        return "{" + items + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def toml_text(data: dict[str, Any], prefix: str = "") -> str:
    """``data`` (sections of plain values) as TOML: tables, arrays of tables, inline values."""
    lines, tables = [], []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if value is None:
            continue
        if isinstance(value, dict) and all(isinstance(k, str) and k.isidentifier() for k in value):
            tables.append(f"[{name}]\n" + toml_text(value, f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables += [f"[[{name}]]\n" + toml_text(v, f"{name}.") for v in value]
        else:
            lines.append(f"{key} = {_value(value)}\n")
    return "".join(lines) + "".join(tables)


@dataclass
class WorkersRelay:
    """The running tree: the supervisor process, its ports and its log file."""

    proc: subprocess.Popen[bytes]
    smtp_port: int
    admin_port: int | None
    log_path: Path
    workers: int

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    async def sigterm_until_draining(self) -> None:
        """SIGTERM to the supervisor; return once every worker logged that it is stopping."""
        self.proc.send_signal(signal.SIGTERM)
        await wait_until(
            lambda: self.log_text().count('"ccguard stopping"') == self.workers,
            "every worker stopping",
        )

    def worker_pids(self) -> dict[int, int]:
        """Worker index → pid of the supervisor's live children."""
        return {index: pid for pid, index in children(self.proc.pid).items()}


def children(parent: int) -> dict[int, int]:
    """pid → ``--worker`` index of ``parent``'s child processes now."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == parent and fields[0] != "Z" and b"--worker" in argv:
            found[int(entry)] = int(argv[argv.index(b"--worker") + 1])
    return found


def _config(settings: Settings, workers: int, folder: Path) -> tuple[Path, int, int | None]:
    data = settings.model_dump(mode="json", exclude_defaults=True)
    port = free_port()
    data.setdefault("smtp", {}).update(listen=f"127.0.0.1:{port}", workers=workers)
    admin_port = None
    if settings.admin.enabled:
        admin_port = free_port()
        data.setdefault("admin", {})["listen"] = f"127.0.0.1:{admin_port}"
    path = folder / "ccguard-workers.toml"
    path.write_text(toml_text(data))
    return path, port, admin_port


@asynccontextmanager
async def running_workers(
    settings: Settings, workers: int, folder: Path
) -> AsyncIterator[WorkersRelay]:
    """``ccguard serve`` with ``workers`` worker processes; stopped (SIGTERM) on exit."""
    config, port, admin_port = _config(settings, workers, folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCGUARD_")}
    env["PYTHONPATH"] = str(ROOT)
    log_path = folder / "ccguard-workers.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "serve", "--config", str(config)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )  # fmt: skip
    relay = WorkersRelay(proc, port, admin_port, log_path, workers)
    try:
        await wait_until(
            lambda: '"workers started"' in relay.log_text() or proc.poll() is not None,
            lambda: f"workers did not start:\n{relay.log_text()}",
        )
        assert proc.poll() is None, f"ccguard exited {proc.returncode}:\n{relay.log_text()}"
        yield relay
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


async def serve_until_exit(
    settings: Settings, workers: int, folder: Path, listen: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``ccguard serve`` with ``workers`` (on ``listen``, default a free port) run to its
    exit, for a start that must fail; its output captured."""
    data = settings.model_dump(mode="json", exclude_defaults=True)
    data["smtp"].update(listen=listen or f"127.0.0.1:{free_port()}", workers=workers)
    data["admin"]["listen"] = f"127.0.0.1:{free_port()}"
    config = folder / "c.toml"
    config.write_text(toml_text(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCGUARD_")}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "relay", "serve", "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env=env,
    )  # fmt: skip
