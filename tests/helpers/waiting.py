"""Waiting for events in tests: a bounded poll and a gate the test opens, never a sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["Gate", "wait_until"]


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds
    (a generous bound for a slow machine, never a margin the test relies on)."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not true after {timeout}s: {what}") from None


class Gate:
    """Holds the upstream at a stage until the test opens it: an event, not a sleep.

    ``hold`` is what :class:`RecordingUpstream` awaits (``data_gate`` /
    ``rcpt_gate``); only the first ``first`` calls wait (all when None), and
    ``waiting`` counts the commands held right now.
    """

    def __init__(self, first: int | None = None) -> None:
        self._open = asyncio.Event()
        self._left = first
        self.waiting = 0

    def open(self) -> None:
        """Let every held command (and all later ones) go on."""
        self._open.set()

    async def hold(self, _what: Any = None) -> None:
        if self._left is not None:
            if self._left <= 0:
                return
            self._left -= 1
        self.waiting += 1
        try:
            await self._open.wait()
        finally:
            self.waiting -= 1
