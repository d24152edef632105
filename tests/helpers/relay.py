"""Start a whole ccguard in the test's event loop, on 127.0.0.1 with a free port."""

from __future__ import annotations

import atexit
import io
import json
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog

from relay.app import Relay
from relay.settings import Settings
from tests.helpers.privacy import register_stream

__all__ = ["LogCapture", "running_relay", "settings_for"]


class LogCapture:
    """A structlog logger writing JSON lines into memory; ``level`` (e.g. ``"warning"``)
    filters like ``[logging] level`` does in ccguard (default: every line)."""

    def __init__(self, level: str = "notset") -> None:
        self.stream = register_stream(io.StringIO())
        self.logger = structlog.wrap_logger(
            structlog.PrintLogger(self.stream),
            wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


def _scratch_dir() -> str:
    path = tempfile.mkdtemp(prefix="ccguard-test-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def settings_for(upstream_port: int, **sections: dict[str, Any]) -> Settings:
    """Settings for a test relay: listen on a free loopback port, forward to ``upstream_port``.

    The quarantine database and admin users file live in a fresh scratch folder;
    the admin/metrics HTTP server listens on a free loopback port.
    """
    scratch = _scratch_dir()
    data: dict[str, Any] = {
        "quarantine": {"database": f"{scratch}/ccguard.db"},
        "admin": {"listen": "127.0.0.1:0", "users_file": f"{scratch}/admin-users.json"},
        "logging": {"hash_key": "test-hash-key"},
        "smtp": {"listen": "127.0.0.1:0", "hostname": "ccguard.test", "shutdown_grace": 5},
        "upstream": {
            "host": "127.0.0.1",
            "port": upstream_port,
            "timeout": 5,
            "connect_timeout": 2,
            "starttls": "off",
        },
        "organisation": {"internal_domains": ["example.org", "*.example.org"]},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return Settings(**data)


@asynccontextmanager
async def running_relay(
    settings: Settings, log: LogCapture | None = None, clock: Callable[[], float] | None = None
) -> AsyncIterator[Relay]:
    """A started :class:`Relay` (``clock``: a settable store clock); stopped on exit."""
    relay = Relay(settings, log=(log or LogCapture()).logger, clock=clock)
    await relay.start()
    try:
        yield relay
    finally:
        await relay.stop()
