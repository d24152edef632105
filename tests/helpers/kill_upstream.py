"""A real aiosmtpd upstream on 127.0.0.1 that SIGKILLs a ccguard process at a chosen moment.

After it has written (and drained) its 250 for the ``kill_after``-th copy, the
next command ccguard sends it, on any connection (QUIT, RSET, MAIL, EHLO …),
is not answered: the upstream first looks at the ledger in ccguard's database
(an SQLite file or a PostgreSQL URL: what was durable at that moment), then
kills ccguard with SIGKILL and waits until it is dead.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from aiosmtpd.smtp import SMTP

from tests.helpers.upstream import serve_loopback

__all__ = ["KillingUpstream"]

_VERBS = ("EHLO", "HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT")


@dataclass
class KillingUpstream:
    """Records each copy's recipients; kills ``victim`` as described above."""

    database: Path | str  # an SQLite file, or a postgresql:// URL (with ``password``)
    password: str | None = None
    copies: Counter[str] = field(default_factory=Counter)
    victim: subprocess.Popen[bytes] | None = None
    kill_after: int = 0  # 0: never
    answered: int = 0
    killed_at: str | None = None  # the command that was not answered
    ledger_at_kill: set[str] = field(default_factory=set)
    port: int = 0
    _armed: bool = False
    _server: asyncio.Server | None = None

    async def start(self) -> KillingUpstream:
        loop = asyncio.get_running_loop()
        self._server, self.port = await serve_loopback(
            lambda: _Server(self, hostname="upstream.test", loop=loop)
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def arm(self, victim: subprocess.Popen[bytes], kill_after: int) -> None:
        """Kill ``victim`` at its first command after the 250 for copy ``kill_after``."""
        self.victim, self.kill_after, self.answered = victim, kill_after, 0

    def after_250(self) -> None:
        self.answered += 1
        self._armed = self.victim is not None and self.answered == self.kill_after

    def before_command(self, verb: str) -> bool:
        """False when ccguard was killed instead (the command must not be answered)."""
        if not self._armed or self.victim is None:
            return True
        victim, self.victim, self._armed = self.victim, None, False
        self.ledger_at_kill = _ledger(self.database, self.password)
        self.killed_at = verb
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        return False


def _ledger(database: Path | str, password: str | None) -> set[str]:
    if isinstance(database, str):
        with psycopg.connect(database, password=password) as pg:
            return {row[0] for row in pg.execute("SELECT copy_id FROM split_ledger")}
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return {row[0] for row in conn.execute("SELECT copy_id FROM split_ledger")}
    finally:
        conn.close()


class _Server(SMTP):
    def __init__(self, up: KillingUpstream, **kwargs: Any) -> None:
        super().__init__(_Handler(up), **kwargs)
        self.up = up
        self.reply_is_250_to_data = False

    async def push(self, status: Any) -> None:
        await super().push(status)  # written and drained
        if self.reply_is_250_to_data:
            self.reply_is_250_to_data = False
            self.up.after_250()


def _guarded(verb: str) -> Any:
    async def command(self: _Server, arg: Any) -> None:
        if self.up.before_command(verb):
            await getattr(SMTP, "smtp_" + verb)(self, arg)
        else:
            self.transport.close()  # type: ignore[union-attr]

    return command


for _verb in _VERBS:
    setattr(_Server, "smtp_" + _verb, _guarded(_verb))


class _Handler:
    def __init__(self, up: KillingUpstream) -> None:
        self.up = up

    async def handle_DATA(self, server: _Server, session: Any, envelope: Any) -> str:
        self.up.copies.update(envelope.rcpt_tos)
        server.reply_is_250_to_data = True
        return "250 2.0.0 Ok: queued"
