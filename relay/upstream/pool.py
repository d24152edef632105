"""Upstream connections: how one is opened, and a small pool that keeps idle ones.

A busy client should not pay TCP + EHLO (+ STARTTLS + AUTH) per message, so a
connection that finished a transaction cleanly goes back to the pool and the
next transaction takes it.  Like Postfix's connection cache, a reused
connection that turns out dead is replaced once, transparently.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiosmtplib

from relay.settings import UpstreamSettings
from relay.upstream.replies import auth_error, setup_error, tls_error

__all__ = ["Connection", "ConnectionPool", "open_connection"]


@dataclass(slots=True)
class Connection:
    """One open SMTP connection to the upstream and when it was last used."""

    smtp: aiosmtplib.SMTP
    last_used: float
    reused: bool = False

    def close(self) -> None:
        self.smtp.close()


def _client(settings: UpstreamSettings, local_hostname: str) -> aiosmtplib.SMTP:
    # STARTTLS and AUTH are done step by step in open_connection, not by
    # aiosmtplib's connect(), so that a failure is classified by the step it hit.
    return aiosmtplib.SMTP(
        hostname=settings.host,
        port=settings.port,
        local_hostname=settings.helo_name or local_hostname,
        timeout=settings.timeout,
        start_tls=False,
        # Opportunistic TLS protects against passive listeners only (as Postfix's
        # "may" level); "required" verifies the certificate and the name (host).
        validate_certs=settings.starttls == "required",
        cert_bundle=settings.ca_file,
    )


async def _starttls(smtp: aiosmtplib.SMTP, mode: str) -> None:
    """Upgrade to TLS if ``mode`` asks for it; ``required`` fails when it is not offered."""
    if mode == "off" or (mode == "opportunistic" and not smtp.supports_extension("starttls")):
        return
    try:
        await smtp.starttls()
        await smtp.ehlo()  # extensions learnt in clear are void after STARTTLS (RFC 3207)
    except Exception as exc:
        raise tls_error(exc) from exc


async def _login(smtp: aiosmtplib.SMTP, settings: UpstreamSettings) -> None:
    """AUTH with the configured credentials, if any."""
    if settings.username is None:
        return
    try:
        await smtp.login(settings.username, settings.password or "")
    except Exception as exc:
        raise auth_error(exc) from exc


async def open_connection(settings: UpstreamSettings, local_hostname: str) -> Connection:
    """Connect, EHLO, STARTTLS and AUTH as configured; raise :class:`UpstreamError`."""
    smtp = _client(settings, local_hostname)
    try:
        await smtp.connect(timeout=settings.connect_timeout)
        await smtp.ehlo()
        await _starttls(smtp, settings.starttls)
        await _login(smtp, settings)
    except asyncio.CancelledError:
        smtp.close()  # e.g. the client hung up while we greeted the upstream
        raise
    except Exception as exc:
        smtp.close()
        raise setup_error(exc) from exc
    return Connection(smtp=smtp, last_used=time.monotonic())


class ConnectionPool:
    """Idle upstream connections, newest first, at most ``settings.pool_size``.

    Sized to the concurrency: every connection that finished cleanly is kept
    (up to ``pool_size``), so with C transactions at once C connections stay
    open and none is opened per message.  Connections idle longer than
    ``pool_idle_timeout`` are closed by a timer, so after a surge the pool
    shrinks back to what the load needs (docs/throughput.md).
    ``on_open`` is called for every new connection (the churn counter).
    """

    def __init__(
        self,
        settings: UpstreamSettings,
        local_hostname: str,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._local_hostname = local_hostname
        self._on_open = on_open
        self._idle: list[Connection] = []
        self._closed = False
        self._sweep: asyncio.TimerHandle | None = None
        self._quitting: set[asyncio.Task[None]] = set()

    async def acquire(self) -> Connection:
        """A connection ready for MAIL FROM: an idle one if fresh, else a new one."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            fresh = now - conn.last_used < self._settings.pool_idle_timeout
            if fresh and conn.smtp.is_connected:
                conn.reused = True
                return conn
            await _quit(conn)
        return await self.fresh()

    async def fresh(self) -> Connection:
        """A new connection, bypassing the pool (used after a reused one failed)."""
        conn = await open_connection(self._settings, self._local_hostname)
        if self._on_open is not None:
            self._on_open()
        return conn

    async def release(self, conn: Connection, *, reusable: bool) -> None:
        """Give a connection back after a transaction; close it if it cannot be reused."""
        room = not self._closed and len(self._idle) < self._settings.pool_size
        if reusable and room and conn.smtp.is_connected:
            conn.last_used = time.monotonic()
            self._idle.append(conn)
            self._arm_sweep()
        else:
            await _quit(conn)

    def _arm_sweep(self) -> None:
        if self._sweep is None:
            loop = asyncio.get_running_loop()
            self._sweep = loop.call_later(self._settings.pool_idle_timeout, self._expire)

    def _expire(self) -> None:
        """Close the connections idle for ``pool_idle_timeout`` (the oldest are first)."""
        self._sweep = None
        deadline = time.monotonic() - self._settings.pool_idle_timeout
        keep = next((i for i, c in enumerate(self._idle) if c.last_used > deadline), None)
        cut = len(self._idle) if keep is None else keep
        expired, self._idle = self._idle[:cut], self._idle[cut:]
        for conn in expired:
            task = asyncio.get_running_loop().create_task(_quit(conn))
            self._quitting.add(task)
            task.add_done_callback(self._quitting.discard)
        if self._idle:
            self._arm_sweep()

    async def close(self) -> None:
        """QUIT every idle connection; any given back later is closed, not kept."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        idle, self._idle = self._idle, []
        for conn in idle:
            await _quit(conn)
        if self._quitting:
            await asyncio.gather(*self._quitting, return_exceptions=True)

    @property
    def idle_count(self) -> int:
        return len(self._idle)


async def _quit(conn: Connection) -> None:
    try:
        if conn.smtp.is_connected:
            await conn.smtp.quit(timeout=2)
    except Exception:  # a failed QUIT on a connection we drop changes nothing
        pass
    finally:
        conn.close()
