"""Sending notices in the background, so they never hold up or fail a transaction."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from structlog.typing import FilteringBoundLogger

from relay.actions.ports import ActionMetrics, Deliverer, Redact, domain_only
from relay.errors import UpstreamError, UpstreamPermanentError

__all__ = ["AfterNotice", "NoticeSender"]

#: Told whether a notice went (True) or failed for good (False), e.g. to audit it.
AfterNotice = Callable[[bool], Awaitable[None]]


class NoticeSender:
    """Delivers notices with the null envelope sender, as background tasks.

    A transient failure is retried (``attempts`` in all, ``retry_delay``
    seconds apart, growing linearly); a final failure is logged with the
    recipient hashed and counted as ``ccguard_notifications{result="failed"}``.
    """

    def __init__(
        self,
        upstream: Deliverer,
        *,
        log: FilteringBoundLogger,
        metrics: ActionMetrics | None = None,
        redact: Redact = domain_only,
        attempts: int = 3,
        retry_delay: float = 5.0,
    ) -> None:
        self._upstream = upstream
        self._log = log
        self._metrics = metrics
        self._redact = redact
        self._attempts = max(1, attempts)
        self._retry_delay = retry_delay
        self._tasks: set[asyncio.Task[bool]] = set()

    @property
    def pending(self) -> int:
        """Notices still being sent."""
        return len(self._tasks)

    def send(
        self, rcpt: str, notice: bytes, after: AfterNotice | None = None
    ) -> asyncio.Task[bool]:
        """Start sending ``notice`` to ``rcpt``; the task's result says whether it went.

        ``after`` is awaited with that result inside the same task, so
        :meth:`close` waits for it too; its failure changes nothing.
        """
        task = asyncio.get_running_loop().create_task(self._send(rcpt, notice, after))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _send(self, rcpt: str, notice: bytes, after: AfterNotice | None) -> bool:
        went = await self._deliver(rcpt, notice)
        if after is not None:
            try:
                await after(went)
            except Exception as exc:  # the notice's fate stands whatever its record does
                self._log.warning("notice_after_failed", error=str(exc))
        return went

    async def _deliver(self, rcpt: str, notice: bytes) -> bool:
        for attempt in range(1, self._attempts + 1):
            try:
                await self._upstream.deliver("", [rcpt], notice)
            except UpstreamPermanentError as exc:
                return self._failed(rcpt, exc.kind, attempt)
            except UpstreamError as exc:
                if attempt == self._attempts:
                    return self._failed(rcpt, exc.kind, attempt)
                await asyncio.sleep(self._retry_delay * attempt)
            except Exception as exc:  # a notice must never take the relay down
                return self._failed(rcpt, type(exc).__name__, attempt)
            else:
                self._count("sent")
                self._log.info("notice_sent", rcpt=self._redact(rcpt), attempts=attempt)
                return True
        return False

    def _failed(self, rcpt: str, kind: str, attempts: int) -> bool:
        self._count("failed")
        self._log.warning("notice_failed", rcpt=self._redact(rcpt), kind=kind, attempts=attempts)
        return False

    def _count(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.notification(result)

    async def close(self, timeout: float = 10.0) -> None:
        """Give pending notices up to ``timeout`` seconds, then cancel the rest."""
        tasks = set(self._tasks)
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task
