"""Waiting for the signals that stop a ccguard process."""

from __future__ import annotations

import asyncio
import signal

__all__ = ["wait_for_stop_signal"]


async def wait_for_stop_signal() -> None:
    """Return once SIGTERM or SIGINT arrives (handled on the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
