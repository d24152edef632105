#!/usr/bin/env python3
"""The library floor: a minimal aiosmtpd + aiosmtplib in-line relay, no inspection.

Each client session gets one upstream connection, opened at its first message and
kept for the session's life; each message is relayed at end of DATA and the
upstream's reply is the client's.  What ccguard does per message beyond this is
ccguard's own cost.

Usage: python bench/floor_relay.py PORT UPSTREAM_PORT
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import aiosmtplib
from aiosmtpd.smtp import SMTP


class Relay:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        smtp = getattr(session, "upstream", None)
        if smtp is None or not smtp.is_connected:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.upstream_port, start_tls=False)
            await smtp.connect()
            session.upstream = smtp
        try:
            _, reply = await smtp.sendmail(envelope.mail_from, envelope.rcpt_tos, envelope.content)
        except aiosmtplib.SMTPException as exc:
            smtp.close()
            return f"451 4.4.0 upstream: {exc}"
        return f"250 2.0.0 {reply}"


class Session(SMTP):
    def connection_lost(self, exc: Exception | None) -> None:
        upstream = getattr(self.session, "upstream", None) if self.session else None
        if upstream is not None:
            upstream.close()
        super().connection_lost(exc)


async def main(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    handler = Relay(upstream_port)
    server = await loop.create_server(
        lambda: Session(handler, hostname="relay.bench"), "127.0.0.1", port, backlog=1024
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
