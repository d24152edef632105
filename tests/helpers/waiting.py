"""Waiting for events in tests: a bounded poll and a gate the test opens, never a sleep."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["Gate", "wait_until"]


async def wait_until(
    condition: Callable[[], bool], what: str | Callable[[], str], timeout: float = 30.0
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds
    (a generous bound for a slow machine, never a margin the test relies on),
    saying ``what`` (or what ``what()`` says then)."""
    try:
        async with asyncio.timeout(timeout):
            while not condition():
                await asyncio.sleep(0.005)
    except TimeoutError:
        said = what if isinstance(what, str) else what()
        raise AssertionError(f"not true after {timeout}s: {said}") from None


class Gate:
    """Holds the upstream at a stage until the test opens it: an event, not a sleep.

    ``hold`` is what :class:`~tests.helpers.upstream.RecordingUpstream` awaits:
    as ``data_gate`` / ``rcpt_gate`` every call is held, as ``upstream.gate``
    it is called with the stage (``banner``, ``EHLO``, ``MAIL``, ``RCPT``) and
    holds only the one named by ``stage``.  Only the first ``first`` calls wait
    (all when None); ``waiting`` counts the calls held right now; ``reached``
    is a ``threading.Event``, so a client talking in a worker thread can wait
    for it.  ``then`` runs right after the held reply is written, before the
    loop runs anything else (e.g. reset the client now, so both arrive at
    ccguard together).
    """

    def __init__(self, stage: str | None = None, *, first: int | None = None) -> None:
        self.stage = stage
        self.reached = threading.Event()
        self.then: Callable[[], None] | None = None
        self.waiting = 0
        self._open = asyncio.Event()
        self._left = first
        self._answering = False

    def open(self) -> None:
        """Let every held call (and all later ones) go on."""
        self._open.set()

    async def hold(self, what: Any = None) -> None:
        """Wait here until :meth:`open`, if this call is one the gate holds."""
        if self.stage is not None and what != self.stage:
            return
        if self._left is not None:
            if self._left <= 0:
                return
            self._left -= 1
        self.waiting += 1
        self.reached.set()
        try:
            await self._open.wait()
        finally:
            self.waiting -= 1
        self._answering = self.then is not None

    def answered(self) -> None:
        """Called by the upstream after each reply it writes: runs ``then`` once."""
        if self._answering and self.then is not None:
            self._answering = False
            self.then()
