"""One SQLite connection owned by one thread, for the event loop to hand work to."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from relay.errors import StoreError
from relay.quarantine.sqlite_conn import connect, translate_error

__all__ = ["SqliteWorker"]

T = TypeVar("T")


class SqliteWorker:
    """A connection opened, used and closed on one dedicated thread.

    :meth:`call` runs a small blocking function with the connection on that
    thread and awaits it: the event loop never blocks on disk, the connection
    is never shared between threads, and the work of one worker is serialised.
    """

    def __init__(self, path: Path, busy_timeout: float, name: str) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Open the connection (creating, configuring and migrating the file)."""
        if self._conn is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
        loop = asyncio.get_running_loop()
        try:
            self._conn = await loop.run_in_executor(executor, connect, self.path, self.busy_timeout)
        except StoreError:
            executor.shutdown(wait=False)
            raise
        except (sqlite3.Error, OSError) as exc:
            executor.shutdown(wait=False)
            raise translate_error(self.path, "open", exc) from exc
        self._executor = executor

    async def call(self, what: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the worker's thread; errors become :class:`StoreError`."""
        executor, conn = self._executor, self._conn
        if executor is None or conn is None:
            raise StoreError(f"quarantine store {self.path}: {what} failed: store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, fn, conn)
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise translate_error(self.path, what, exc) from exc

    async def close(self) -> None:
        """Close the connection and stop the thread; safe to call twice."""
        executor, conn = self._executor, self._conn
        self._executor, self._conn = None, None
        if executor is None or conn is None:
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(sqlite3.Error):
            await loop.run_in_executor(executor, conn.close)
        executor.shutdown(wait=False)
