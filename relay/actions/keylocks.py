"""One asyncio lock per key, kept only while someone holds or waits for it.

This serialises the deliveries of one split message *inside one process*,
so that same-process retries wait here instead of polling the database.
Across processes the lease in the store (relay/actions/split_claims.py)
does the job; correctness comes from that lease, not from this lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from relay.errors import ClaimBusyError

__all__ = ["KeyLocks"]


class KeyLocks:
    """``async with locks.hold(key):`` runs one holder of ``key`` at a time."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    def __len__(self) -> int:
        """Keys held or waited for right now (0 when idle: nothing accumulates)."""
        return len(self._locks)

    def users(self, key: str) -> int:
        """How many hold or wait for ``key`` right now."""
        return self._users.get(key, 0)

    @asynccontextmanager
    async def hold(self, key: str, timeout: float | None = None) -> AsyncIterator[None]:
        """Wait for ``key``'s lock (at most ``timeout`` seconds, else ClaimBusyError),
        hold it for the block, forget it when unused."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            try:
                async with asyncio.timeout(timeout):
                    await lock.acquire()
            except TimeoutError:
                raise ClaimBusyError() from None
            try:
                yield
            finally:
                lock.release()
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]
