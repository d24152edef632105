"""Password hashing on a small thread pool of its own, refusing work when it is swamped.

scrypt takes tens of milliseconds of CPU and 16 MiB per check.  Run in the
default executor, a flood of bogus logins would queue ahead of the relay's
own blocking work (message inspection, SQLite) and stall SMTP.  Here at most
``workers`` checks run at once and at most ``max_waiting`` more wait; beyond
that :class:`HashingBusy` is raised at once and the caller answers 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["HashingBusy", "HashingPool"]

T = TypeVar("T")


class HashingBusy(Exception):
    """Too many password checks are already running or waiting."""


class HashingPool:
    """A bounded executor for password checks."""

    def __init__(self, workers: int = 2, max_waiting: int = 8) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="ccguard-hash")
        self._limit = workers + max_waiting
        self._in_use = 0

    @property
    def in_use(self) -> int:
        """Checks running or waiting now."""
        return self._in_use

    async def run(self, func: Callable[..., T], *args: object) -> T:
        """``func(*args)`` on the pool's threads; raises :class:`HashingBusy` when it is full."""
        if self._in_use >= self._limit:
            raise HashingBusy
        self._in_use += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
        finally:
            self._in_use -= 1

    def close(self) -> None:
        """Stop the threads once the running checks are done."""
        self._executor.shutdown(wait=False, cancel_futures=True)
