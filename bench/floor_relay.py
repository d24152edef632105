#!/usr/bin/env python3
"""The library floor: a minimal aiosmtpd + aiosmtplib in-line relay, no inspection.

Each client session gets one upstream connection, opened at its first message and
kept for the session's life; each message is relayed at end of DATA and the
upstream's reply is the client's.  What ccguard does per message beyond this is
ccguard's own cost.

``--processes N`` runs N copies on the port with SO_REUSEPORT (the kernel spreads
connections over them): what the bare libraries gain from more cores, the
reference for ccguard's ``[smtp] workers``.

Usage: python bench/floor_relay.py PORT UPSTREAM_PORT [--processes N]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import signal
import socket
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


def listening_socket(port: int, reuse_port: bool) -> socket.socket:
    """Bound and listening before any copy starts, so the first greeting means all are."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


async def serve(sock: socket.socket, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    handler = Relay(upstream_port)
    server = await loop.create_server(
        lambda: Session(handler, hostname="relay.bench"), sock=sock, backlog=1024
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def die_with_parent() -> None:
    """SIGTERM this copy if the parent is killed (else it would keep the port)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("upstream_port", type=int)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    socks = [listening_socket(args.port, args.processes > 1) for _ in range(args.processes)]
    children = []
    for sock in socks[1:]:
        pid = os.fork()
        if pid == 0:  # a copy: serves its own socket until SIGTERM
            code = 1
            try:
                die_with_parent()
                asyncio.run(serve(sock, args.upstream_port))
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    try:
        asyncio.run(serve(socks[0], args.upstream_port))
    finally:
        for pid in children:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
