"""Wires the parts together from settings, starts them and stops them.

This is the only module that knows every stage.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from typing import Any

import structlog

from relay import __version__
from relay.observability.http import (
    CheckResult,
    bound_port,
    create_app,
    make_server,
)
from relay.observability.logging import configure_logging
from relay.observability.metrics import Metrics
from relay.observability.redact import Redactor
from relay.settings import Settings, parse_listen
from relay.smtp import FrontContext, PassDecider, PassThroughDispatcher, SmtpListener
from relay.upstream import UpstreamClient

__all__ = ["Relay", "serve"]


class Relay:
    """One running ccguard: SMTP front, upstream client and everything behind them."""

    def __init__(
        self, settings: Settings, *, log: Any | None = None, redactor: Redactor | None = None
    ) -> None:
        self.settings = settings
        self.log = log if log is not None else structlog.get_logger("ccguard")
        self.redactor = (
            redactor if redactor is not None else Redactor.from_settings(settings.logging)
        )
        self.metrics = Metrics(version=__version__, mode=settings.policy.mode)
        self.metrics.declare_rules((r.action, r.name) for r in settings.policy.rules)
        self.upstream = UpstreamClient(
            settings.upstream, local_hostname=settings.smtp.hostname, metrics=self.metrics
        )
        self.front = FrontContext(
            settings=settings.smtp,
            upstream=self.upstream,
            decider=PassDecider(),
            dispatcher=PassThroughDispatcher(),
            log=self.log,
            redact=self.redactor.address,
            metrics=self.metrics,
        )
        self.listener = SmtpListener(self.front)
        self._http: Any | None = None
        self._http_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start listening; raises ``OSError`` if an address cannot be bound."""
        host, port = parse_listen(self.settings.smtp.listen)
        await self.listener.start(host, port)
        await self._start_http()
        self.log.info(
            "ccguard started",
            version=__version__,
            smtp_listen=f"{host}:{self.listener.port}",
            http_listen=self.http_listen,
            upstream=f"{self.settings.upstream.host}:{self.settings.upstream.port}",
            policy_mode=self.settings.policy.mode,
        )

    @property
    def smtp_port(self) -> int:
        return self.listener.port

    @property
    def http_port(self) -> int | None:
        return bound_port(self._http) if self._http is not None and self._http.started else None

    @property
    def http_listen(self) -> str | None:
        if self.http_port is None:
            return None
        host, _ = parse_listen(self._http_listen_setting())
        return f"{host}:{self.http_port}"

    def _http_listen_setting(self) -> str:
        return self.settings.metrics.listen or self.settings.admin.listen

    def _checks(self) -> dict[str, Any]:
        async def smtp() -> CheckResult:
            return (
                self.listener.serving,
                "listening" if self.listener.serving else "not listening",
            )

        async def upstream() -> CheckResult:
            started = time.monotonic()
            try:
                await self.upstream.ping()
            except Exception as exc:
                return (False, f"{type(exc).__name__}: {exc}")
            return (True, f"EHLO answered in {time.monotonic() - started:.3f}s")

        return {"smtp": smtp, "upstream": upstream}

    def _http_app(self) -> Any:
        timeout = self.settings.metrics.readiness_timeout
        return create_app(self.metrics, checks=self._checks(), readiness_timeout=timeout)

    async def _start_http(self) -> None:
        if not (self.settings.admin.enabled or self.settings.metrics.listen):
            return
        listen = self._http_listen_setting()
        # We bind the socket ourselves: uvicorn calls sys.exit() when it cannot.
        sock = bind_tcp(*parse_listen(listen))
        self._http = make_server(self._http_app(), listen)
        self._http_task = asyncio.create_task(self._http.serve(sockets=[sock]))
        while not self._http.started:
            if self._http_task.done():
                self._http_task.result()
                raise OSError(f"HTTP server on {listen} did not start")
            await asyncio.sleep(0.01)

    async def _stop_http(self) -> None:
        if self._http is None or self._http_task is None:
            return
        self._http.should_exit = True
        with contextlib.suppress(Exception):
            await self._http_task
        self._http = self._http_task = None

    async def stop(self) -> None:
        """Stop accepting, finish transactions in flight (bounded), close everything."""
        grace = self.settings.smtp.shutdown_grace
        self.log.info("ccguard stopping", grace_seconds=grace)
        await self.listener.stop(grace)
        await self._stop_http()
        await self.upstream.close()
        self.log.info("ccguard stopped")


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (IPv4 or IPv6); raises ``OSError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then shut down gracefully; returns the exit code."""
    redactor = configure_logging(settings.logging)
    relay = Relay(settings, log=structlog.get_logger("ccguard"), redactor=redactor)
    try:
        await relay.start()
    except OSError as exc:
        relay.log.error("cannot start", error=str(exc))
        await relay.stop()
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await relay.stop()
    return 0
