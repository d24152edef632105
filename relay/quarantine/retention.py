"""The periodic purge of old quarantined messages and split-ledger rows."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

from relay.errors import StoreError
from relay.quarantine.store import QuarantineStore
from relay.settings import QuarantineSettings, SplitSettings

__all__ = ["purge_once", "run_retention"]


class _Log(Protocol):
    def info(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...


async def purge_once(
    store: QuarantineStore,
    settings: QuarantineSettings,
    split: SplitSettings,
    now: float | None = None,
) -> tuple[int, int]:
    """Expire messages older than ``retention_days`` and ledger rows older than
    ``ledger_retention_hours``; returns ``(messages, ledger_rows)`` purged."""
    now = time.time() if now is None else now
    messages = await store.expire(now - settings.retention_days * 86400.0)
    ledger = await store.expire_ledger(now - split.ledger_retention_hours * 3600.0)
    return messages, ledger


async def run_retention(
    store: QuarantineStore,
    settings: QuarantineSettings,
    split: SplitSettings,
    log: _Log,
    stop_event: asyncio.Event,
    *,
    clock: Callable[[], float] = time.time,
) -> None:
    """Purge now and then every ``purge_interval`` seconds until ``stop_event`` is set.

    Logs counts only.  A store failure is logged and retried at the next
    interval; it never ends the task.
    """
    while not stop_event.is_set():
        try:
            messages, ledger = await purge_once(store, settings, split, clock())
        except StoreError as exc:
            log.error("quarantine_purge_failed", error=str(exc))
        else:
            log.info("quarantine_purged", messages=messages, ledger_rows=ledger)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), timeout=settings.purge_interval)
