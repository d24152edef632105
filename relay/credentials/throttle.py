"""Slow down password guessing: backoff per client IP, per (IP, user) and per user, in memory.

Three counters of failures in a row, each with its own key:

- ``ip:<ip>``: one client guessing at any account (``free`` failures, then backoff);
- ``pair:<ip> <user>``: one client guessing at one account (``free``, then backoff);
- ``user:<user>``: everyone guessing at one account, with a much higher
  threshold (``user_free``).  It only holds back clients that have failed
  before (their ``ip`` or ``pair`` counter is not zero): a client with a clean
  record always gets its password checked, so nobody can lock an admin out by
  failing logins under her name.

After its threshold, a counter must wait ``base * 2**(extra failures)``
seconds (capped at ``cap``) before the next attempt is even checked.  A
success clears the ``pair`` and ``user`` counters (not the IP's: one good
account must not unlock guessing at others).  At most ``max_keys`` counters
are kept; the oldest are forgotten first, so memory stays bounded.

Attempts from one IP are checked one at a time (:meth:`LoginThrottle.serialised`),
so concurrent requests cannot all pass the check before the first failure
is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

__all__ = ["LoginThrottle"]


@dataclass(slots=True)
class _Record:
    failures: int
    not_before: float


class _KeyedLocks:
    """One asyncio lock per key, dropped as soon as nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class LoginThrottle:
    """Tracks failed logins; :meth:`wait_for` says how long a client must still wait."""

    def __init__(
        self,
        *,
        free: int = 3,
        user_free: int = 30,
        base: float = 1.0,
        cap: float = 60.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free, self.user_free = free, user_free
        self.base, self.cap, self.max_keys = base, cap, max_keys
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self._locks = _KeyedLocks()

    @staticmethod
    def _keys(ip: str, user: str) -> tuple[str, str, str]:
        name = user.lower()
        return f"ip:{ip}", f"pair:{ip} {name}", f"user:{name}"

    def serialised(self, ip: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold this while checking and counting one attempt from ``ip``."""
        return self._locks.hold(ip)

    def wait_for(self, ip: str, user: str) -> float:
        """Seconds the attempt must still wait (0 when it may be checked now)."""
        now = self._clock()
        ip_rec, pair_rec, user_rec = (self._records.get(k) for k in self._keys(ip, user))
        own = [rec for rec in (ip_rec, pair_rec) if rec is not None]
        counted = own + ([user_rec] if user_rec is not None and own else [])
        return max([0.0, *(rec.not_before - now for rec in counted)])

    def failure(self, ip: str, user: str) -> None:
        """Record one failed attempt from ``ip`` for ``user``."""
        now = self._clock()
        ip_key, pair_key, user_key = self._keys(ip, user)
        for key, free in ((ip_key, self.free), (pair_key, self.free), (user_key, self.user_free)):
            rec = self._records.pop(key, None) or _Record(0, now)
            rec.failures += 1
            extra = rec.failures - free
            delay = 0.0 if extra < 0 else min(self.cap, self.base * 2.0 ** min(extra, 30))
            rec.not_before = now + delay
            self._records[key] = rec
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)

    def success(self, ip: str, user: str) -> None:
        """A correct password: forget the failures for this user (not the IP's)."""
        _, pair_key, user_key = self._keys(ip, user)
        self._records.pop(pair_key, None)
        self._records.pop(user_key, None)
