"""Keeping a claim alive while its holder works (split leases, release claims).

A claim lasts ``lease`` seconds from its last renewal.  Renewing "every third
of the lease, whatever happened" let it run out while the holder was fine:
one renewal that failed only at the store's own deadline (PostgreSQL:
``connect_timeout + statement_timeout``, 15 s with the defaults, half of the
default lease; longer still on a silent connection, which psycopg then tries
to cancel for up to 10 s more) and the next try came after the lease had
expired, so another instance could take over a holder that was still
delivering.  So here the next renewal is due a third of the lease after the
last *successful* one, each try gets at most half of what is left of the
lease (a try that has not answered by then is left to finish on its own and
a fresh one started, on another pooled connection), and a failed try is
retried after a short pause.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from relay.errors import StoreError

__all__ = ["keep_renewed"]

#: No try gets less than this (seconds), even once the lease is (nearly) over.
MIN_TRY = 0.2


def _quiet(task: asyncio.Task[bool]) -> None:
    # An abandoned try: its outcome no longer matters, but must be retrieved.
    if not task.cancelled():
        task.exception()


async def keep_renewed(
    renew: Callable[[], Awaitable[bool]],
    lease: float,
    *,
    on_error: Callable[[str], None],
    on_renewed: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Call ``renew()`` (True: still ours) so that the claim never lapses while
    the store answers within the lease; return once it answers False (the
    claim changed hands).  Failures and slow tries are reported to ``on_error``
    and retried; ``on_renewed(t)`` hears of each success (``t``: when that try
    started, by ``clock``); cancel the task to stop."""
    last_ok = clock()
    abandoned: set[asyncio.Task[bool]] = set()
    try:
        while True:
            await asyncio.sleep(max(0.0, last_ok + lease / 3 - clock()))
            started = clock()
            task: asyncio.Task[bool] = asyncio.ensure_future(renew())
            done, _ = await asyncio.wait(
                {task}, timeout=max(MIN_TRY, (last_ok + lease - started) / 2)
            )
            if not done:
                task.cancel()
                task.add_done_callback(_quiet)
                task.add_done_callback(abandoned.discard)
                abandoned.add(task)
                on_error("no answer from the store in time")
                continue
            try:
                mine = task.result()
            except StoreError as exc:
                on_error(str(exc))
                await asyncio.sleep(min(lease / 10, 1.0))
                continue
            if not mine:
                return
            last_ok = started
            if on_renewed is not None:
                on_renewed(started)
    finally:
        for pending in abandoned:
            pending.cancel()
