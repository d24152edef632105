"""The upstream client: live proxy transactions and whole deliveries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiosmtplib

from relay.codes import NO_8BITMIME, Reply
from relay.errors import UpstreamError, UpstreamPermanentError, UpstreamTransientError
from relay.settings import UpstreamSettings
from relay.upstream import commands
from relay.upstream.pool import Connection, ConnectionPool
from relay.upstream.replies import error_from_exception, reply_from_response, transient_reply_for
from relay.upstream.stream import send_data

__all__ = [
    "AcceptHook",
    "BeforeData",
    "DeliveryResult",
    "UpstreamClient",
    "UpstreamMetrics",
    "UpstreamTransaction",
]

# Awaited with the accepted recipients the moment the upstream's 250 to DATA
# is read, before anything else (metrics, pooling, QUIT) happens.
AcceptHook = Callable[[Sequence[str]], Awaitable[None]]
BeforeData = Callable[[], None]

# MAIL FROM parameters worth carrying to the next hop, if it supports them.
# A pooled connection that fails like this was stale: retry once on a new one.
_STALE_KINDS = frozenset({"disconnect", "refused"})
_FORWARDED_PARAMS = {"BODY": "8BITMIME", "SMTPUTF8": "SMTPUTF8", "SIZE": "SIZE"}


class UpstreamMetrics(Protocol):
    """The part of :class:`relay.observability.Metrics` the client reports to."""

    def observe_upstream(self, outcome: str, seconds: float, error_kind: str | None) -> None: ...

    def upstream_connection_opened(self) -> None: ...


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """A message the upstream accepted: its final ``reply`` and any refused recipients."""

    reply: Reply
    refused: dict[str, Reply] = field(default_factory=dict)


def _mail_params(smtp: aiosmtplib.SMTP, options: Sequence[str]) -> list[str]:
    """The MAIL FROM parameters to send upstream; raise if 8-bit data cannot go there.

    ccguard never converts a message (that would change its bytes), so 8-bit
    content for a next hop without 8BITMIME is refused as RFC 6152 allows.
    """
    if any(o.upper() == "BODY=8BITMIME" for o in options) and not smtp.supports_extension(
        "8BITMIME"
    ):
        raise UpstreamPermanentError("upstream lacks 8BITMIME", kind="5xx", reply=NO_8BITMIME)
    params = []
    for option in options:
        keyword = option.split("=", 1)[0].upper()
        extension = _FORWARDED_PARAMS.get(keyword)
        if extension == "SMTPUTF8" or (extension and smtp.supports_extension(extension)):
            params.append(option)
    return params


def _encoding(options: Sequence[str]) -> str:
    return "utf-8" if any(opt.upper() == "SMTPUTF8" for opt in options) else "ascii"


class UpstreamTransaction:
    """One open upstream transaction, begun at the client's MAIL FROM.

    Each client RCPT is forwarded with :meth:`rcpt` and answered with the
    upstream's own reply; :meth:`data` sends the message; :meth:`abort` sends
    RSET.  Either way the connection goes back to the pool when it is clean.
    """

    def __init__(self, client: UpstreamClient, conn: Connection, options: Sequence[str]) -> None:
        self._client = client
        self._conn: Connection | None = conn
        self._encoding = _encoding(options)
        self.accepted: list[str] = []

    @property
    def open(self) -> bool:
        return self._conn is not None

    def _smtp(self) -> aiosmtplib.SMTP:
        if self._conn is None:
            raise UpstreamTransientError("upstream transaction is closed", kind="disconnect")
        return self._conn.smtp

    async def rcpt(self, address: str, options: Sequence[str] = ()) -> Reply:
        """Forward one RCPT TO; return the upstream's reply (success or refusal)."""
        try:
            resp = await commands.rcpt(self._smtp(), address, options, self._encoding)
        except aiosmtplib.SMTPRecipientRefused as exc:
            return reply_from_response(exc.code, exc.message)
        except asyncio.CancelledError:
            self._drop()
            raise
        except Exception as exc:
            raise await self._fail(exc) from exc
        self.accepted.append(address)
        return reply_from_response(resp.code, resp.message)

    async def data(self, *pieces: bytes | memoryview, on_accept: AcceptHook | None = None) -> Reply:
        """Send the message ``b"".join(pieces)`` without joining them (e.g. the trace
        header and the client's bytes); return the upstream's 250 or raise
        :class:`UpstreamError`.

        ``on_accept(accepted recipients)`` is awaited right after the 250 is
        read, before the connection is pooled or closed (a QUIT is a round
        trip); whatever it raises is raised here, after the connection is
        released.
        """
        started = time.monotonic()
        try:
            smtp = self._smtp()
            resp = await send_data(smtp, pieces, timeout=smtp.timeout)
        except asyncio.CancelledError:
            self._drop()
            raise
        except Exception as exc:
            error = await self._fail(exc)
            self._client.observe("error", started, error.kind)
            raise error from exc
        try:
            if on_accept is not None:
                await on_accept(tuple(self.accepted))
        finally:
            self._client.observe("accepted", started, None)
            await self._finish(reusable=True)
        return reply_from_response(resp.code, resp.message)

    async def abort(self) -> None:
        """RSET the upstream transaction (nothing is delivered) and release the connection."""
        if self._conn is None:
            return
        try:
            await self._conn.smtp.rset()
        except asyncio.CancelledError:
            self._drop()
            raise
        except Exception:
            self._drop()
        else:
            await self._finish(reusable=True)

    async def _fail(self, exc: BaseException) -> UpstreamError:
        error = error_from_exception(exc)
        # After a 4xx/5xx reply the session is still usable, but after a timeout
        # or disconnect its state is unknown: a late reply could be paired with
        # our next command.  So close at once: not RSET, not pooled, and not even
        # QUIT, which a slow upstream would take as "still here" and answer.
        clean = isinstance(exc, aiosmtplib.SMTPResponseException) and self._conn is not None
        if clean:
            await self.abort()
        else:
            self._drop()
        return error

    def _drop(self) -> None:
        # Cancelled with a reply still owed: a late reply could be paired with a
        # later command, so the connection is closed at once, never pooled.
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _finish(self, *, reusable: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self._client.pool.release(conn, reusable=reusable)


class UpstreamClient:
    """Hands messages to the next hop with aiosmtplib, reusing connections."""

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        local_hostname: str,
        metrics: UpstreamMetrics | None = None,
    ) -> None:
        self.settings = settings
        opened = metrics.upstream_connection_opened if metrics is not None else None
        self.pool = ConnectionPool(settings, local_hostname, on_open=opened)
        self._metrics = metrics

    def observe(self, outcome: str, started: float, error_kind: str | None) -> None:
        """Report one upstream attempt to the metrics, if any."""
        if self._metrics is not None:
            self._metrics.observe_upstream(outcome, time.monotonic() - started, error_kind)

    async def begin(self, mail_from: str, options: Sequence[str] = ()) -> UpstreamTransaction:
        """Open a transaction with MAIL FROM; raise :class:`UpstreamError` if refused or down."""
        started = time.monotonic()
        conn = await self._acquire(started)
        try:
            await self._mail(conn, mail_from, options)
        except UpstreamError as first:
            if not conn.reused or first.kind not in _STALE_KINDS:
                self.observe("error", started, first.kind)
                raise
            conn = await self._acquire(started, fresh=True)
            await self._mail(conn, mail_from, options)
        return UpstreamTransaction(self, conn, options)

    async def _acquire(self, started: float, *, fresh: bool = False) -> Connection:
        try:
            return await (self.pool.fresh() if fresh else self.pool.acquire())
        except UpstreamError as exc:
            self.observe("error", started, exc.kind)
            raise

    async def _mail(self, conn: Connection, mail_from: str, options: Sequence[str]) -> None:
        try:
            params = _mail_params(conn.smtp, options)
        except UpstreamError:
            await self.pool.release(conn, reusable=True)
            raise
        try:
            await commands.mail(conn.smtp, mail_from, params, _encoding(options))
        except asyncio.CancelledError:
            conn.close()
            raise
        except Exception as exc:
            if isinstance(exc, aiosmtplib.SMTPResponseException):
                await self.pool.release(conn, reusable=True)
            else:
                conn.close()  # after a timeout or disconnect: see UpstreamTransaction._fail
            raise error_from_exception(exc) from exc

    async def deliver(
        self,
        mail_from: str,
        rcpts: Sequence[str],
        message: bytes | tuple[bytes | memoryview, ...],
        options: Sequence[str] = (),
        *,
        on_accept: AcceptHook | None = None,
        before_data: BeforeData | None = None,
    ) -> DeliveryResult:
        """A whole transaction: MAIL, every RCPT, DATA.

        Returns when the upstream accepted the message for at least one
        recipient (the others are in ``refused``); raises
        :class:`UpstreamTransientError` / :class:`UpstreamPermanentError` when
        it accepted it for nobody.  ``on_accept``: see
        :meth:`UpstreamTransaction.data`.  ``before_data()`` is called right
        before DATA; what it raises is raised after the transaction was aborted
        (RSET: nothing delivered).
        """
        txn = await self.begin(mail_from, options)
        refused: dict[str, Reply] = {}
        for rcpt in rcpts:
            reply = await txn.rcpt(rcpt)
            if not reply.is_success:
                refused[rcpt] = reply
        if not txn.accepted:
            await txn.abort()
            raise _all_refused(refused)
        if before_data is not None:
            try:
                before_data()
            except BaseException:
                await txn.abort()
                raise
        pieces = message if isinstance(message, tuple) else (message,)
        reply = await txn.data(*pieces, on_accept=on_accept)
        return DeliveryResult(reply=reply, refused=refused)

    async def ping(self) -> None:
        """Check the upstream answers EHLO now (for readiness); raise :class:`UpstreamError`."""
        conn = await self.pool.fresh()
        await self.pool.release(conn, reusable=True)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.pool.close()

    def __repr__(self) -> str:
        return f"UpstreamClient({self.settings.host}:{self.settings.port})"


def _all_refused(refused: dict[str, Reply]) -> UpstreamError:
    replies = list(refused.values())
    worst: Any = next((r for r in replies if r.is_transient), replies[0] if replies else None)
    if worst is None:
        return UpstreamPermanentError("no recipients", kind="5xx")
    if worst.is_transient:
        return UpstreamTransientError(str(worst), kind="4xx", reply=transient_reply_for(worst))
    return UpstreamPermanentError(str(worst), kind="5xx", reply=worst)
