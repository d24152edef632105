#!/usr/bin/env python3
"""The bare aiosmtpd sink: accepts every message and keeps nothing (the ceiling of the library).

Usage: python bench/floor_sink.py PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from aiosmtpd.smtp import SMTP


class Discard:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Discard(), hostname="sink.bench"), "127.0.0.1", port, backlog=1024
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
