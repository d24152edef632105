"""Wires the parts together from settings, starts them and stops them.

This is the only module that knows every stage.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import structlog

from relay.settings import Settings, parse_listen
from relay.smtp import FrontContext, PassDecider, PassThroughDispatcher, SmtpListener
from relay.upstream import UpstreamClient

__all__ = ["Relay", "serve"]


class Relay:
    """One running ccguard: SMTP front, upstream client and everything behind them."""

    def __init__(self, settings: Settings, *, log: Any | None = None) -> None:
        self.settings = settings
        self.log = log if log is not None else structlog.get_logger("ccguard")
        self.upstream = UpstreamClient(settings.upstream, local_hostname=settings.smtp.hostname)
        self.front = FrontContext(
            settings=settings.smtp,
            upstream=self.upstream,
            decider=PassDecider(),
            dispatcher=PassThroughDispatcher(),
            log=self.log,
            redact=_domain_only,
        )
        self.listener = SmtpListener(self.front)

    async def start(self) -> None:
        """Start listening; raises ``OSError`` if the address cannot be bound."""
        host, port = parse_listen(self.settings.smtp.listen)
        await self.listener.start(host, port)
        self.log.info(
            "ccguard started",
            smtp_listen=f"{host}:{self.listener.port}",
            upstream=f"{self.settings.upstream.host}:{self.settings.upstream.port}",
            policy_mode=self.settings.policy.mode,
        )

    @property
    def smtp_port(self) -> int:
        return self.listener.port

    async def stop(self) -> None:
        """Stop accepting, finish transactions in flight (bounded), close everything."""
        grace = self.settings.smtp.shutdown_grace
        self.log.info("ccguard stopping", grace_seconds=grace)
        await self.listener.stop(grace)
        await self.upstream.close()
        self.log.info("ccguard stopped")


def _domain_only(address: str) -> str:
    return "@" + address.rpartition("@")[2].lower() if "@" in address else "<invalid>"


async def serve(settings: Settings, *, log: Any | None = None) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully; returns the exit code."""
    relay = Relay(settings, log=log)
    try:
        await relay.start()
    except OSError as exc:
        relay.log.error("cannot start", error=str(exc))
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await relay.stop()
    return 0
