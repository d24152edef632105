"""The aiosmtpd protocol subclass: ccguard's checks, replies and timeouts on a session.

The listener that runs it in our own loop is :mod:`relay.smtp.listener`.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Callable
from typing import Any

from aiosmtpd.proxy_protocol import ProxyData
from aiosmtpd.smtp import TLSSetupException

from relay import codes
from relay.codes import Reply
from relay.smtp.auth import capture_credentials, session_user
from relay.smtp.context import FrontContext
from relay.smtp.limits import JUNK_COMMANDS, ErrorCount, ReplyKind
from relay.smtp.proxy import ProxyGate
from relay.smtp.proxy_first import proxy_refused
from relay.smtp.server_commands import CommandOverrides
from relay.smtp.session import SessionHandler
from relay.smtp.tls import TlsInfo, handshake_failure, tls_info

__all__ = ["GuardSMTP"]

# aiosmtpd's own replies, given the enhanced status codes and wording ccguard uses.
_TRANSLATED = {
    b"552 Error: Too much mail data": str(codes.MESSAGE_TOO_BIG).encode(),
    b"552 Error: message size exceeds fixed maximum message size": str(
        codes.MESSAGE_TOO_BIG
    ).encode(),
    b"500 Line too long (see RFC5321 4.5.3.1.6)": str(codes.LINE_TOO_LONG).encode(),
    b"500 Command line too long": str(codes.COMMAND_TOO_LONG).encode(),
    b"530 Must issue a STARTTLS command first": str(codes.STARTTLS_FIRST).encode(),
}
# What aiosmtpd's EHLO says when no AUTH mechanism is left (AUTH not configured).
_EMPTY_AUTH_LINE = b"250-AUTH "
# aiosmtpd's own limit (BOGUS_LIMIT, not configurable): it closes after this reply
# to the fifth unknown command of a connection; ccguard says its 421 instead.
_TOO_MANY_UNKNOWN = b"502 5.5.1 Too many unrecognized commands, goodbye."
_MECHANISMS = ("LOGIN", "PLAIN")


# The metric's stages: EHLO and HELO both greet.
_STAGE_OF = {"EHLO": "helo", "HELO": "helo"}


class GuardSMTP(CommandOverrides):
    """aiosmtpd's SMTP with ccguard's access check, replies, timeouts and cleanup."""

    def __init__(
        self,
        handler: SessionHandler,
        ctx: FrontContext,
        *,
        implicit_tls: bool = False,
        proxy_data: ProxyData | None = None,
    ) -> None:
        """``proxy_data``: the PROXY header, read before the TLS handshake
        (:mod:`relay.smtp.proxy_first`); else aiosmtpd reads one when it is on."""
        settings = ctx.settings
        reads_proxy = ctx.proxy is not None and proxy_data is None
        starttls = ctx.tls is not None and settings.starttls != "off" and not implicit_tls
        with warnings.catch_warnings():
            # aiosmtpd warns when AUTH is required without auth_require_tls; on the
            # implicit-TLS listener the whole connection is encrypted, and
            # allow_plaintext is warned about once at start.
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(
                handler,
                hostname=settings.hostname,
                ident="ESMTP ccguard",
                data_size_limit=settings.max_message_size,
                enable_SMTPUTF8=True,
                decode_data=False,
                timeout=settings.idle_timeout,
                tls_context=ctx.tls.current if starttls and ctx.tls else None,
                require_starttls=starttls and settings.starttls == "required",
                authenticator=capture_credentials if ctx.auth else None,
                auth_required=settings.auth.required,
                auth_require_tls=not (implicit_tls or settings.auth.allow_plaintext),
                auth_exclude_mechanism=() if ctx.auth else _MECHANISMS,
                proxy_protocol_timeout=settings.proxy_timeout if reads_proxy else None,
                loop=asyncio.get_running_loop(),
            )
        self._ctx = ctx
        self.implicit_tls = implicit_tls
        self._guard = handler
        self.stage = "connect"
        # The command the client had got to when it hung up without QUIT, if it did.
        self.hung_up_at: str | None = None
        self._closing_ours = False  # ccguard closes (timeout, shutdown, refusal)
        self._serving = False
        self._slot_ip: str | None = None  # counted in ctx.connections while set
        self._proxy_seen = False
        self._proxy_data = proxy_data
        self._admitted = False  # greeted: replies from here on answer commands
        self._errors = ErrorCount(ctx.limits)
        self._in_command = False
        self.cut_off = False  # told 421 for too many errors: nothing more is done or said
        self._smtp_methods = {
            name: self._staged(name, method) for name, method in self._smtp_methods.items()
        }

    def _staged(self, name: str, method: Callable[[str], Any]) -> Callable[[str], Any]:
        stage = _STAGE_OF.get(name, name.lower())
        junk = name in JUNK_COMMANDS

        async def run(arg: str) -> Any:
            if self.cut_off:  # pipelined after the 421, already read: not run
                return None
            self.stage = stage
            self._errors.command(name, junk=junk)
            self._in_command = True
            try:
                result = await method(arg)
            finally:
                self._in_command = False
            # Closed only once the command is done, so its own cleanup (e.g. DATA's
            # end of the upstream transaction) is not cut short.
            if self._errors.exhausted:
                self._cut_if_exhausted()
            return result

        return run

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first and self.session is not None:
            self._guard.connected(self, self.session.peer)
        if (not first or self.implicit_tls) and self._ctx.metrics is not None:
            info = self.tls  # the STARTTLS handshake (or the implicit one) completed
            self._ctx.metrics.smtp_tls_session(info.version if info else "unknown")

    @property
    def tls(self) -> TlsInfo | None:
        """The TLS protocol and cipher of this connection, ``None`` while in clear."""
        return tls_info(self.transport)

    @property
    def authenticated_user(self) -> str | None:
        """The user this session authenticated as, if any."""
        return session_user(self.session)

    def connection_lost(self, error: Exception | None) -> None:
        if self._slot_ip is not None:
            self._ctx.connections.release(self._slot_ip)
            self._slot_ip = None
        self._client_left()
        self._guard.disconnected(serving=self._serving)
        super().connection_lost(error)
        self._consume_close_error()

    def _consume_close_error(self) -> None:
        # A reset leaves its error in the stream protocol's close future, which
        # no server code awaits.  The protocol's __del__ would mark it seen, but
        # gc may finalise the future first (they form a cycle through the
        # traceback) and asyncio then logs "Future exception was never retrieved".
        closed: asyncio.Future[None] | None = getattr(self, "_closed", None)
        if closed is not None and closed.done() and not closed.cancelled():
            closed.exception()

    def eof_received(self) -> bool | None:
        self._client_left()
        return super().eof_received()

    def _client_left(self) -> None:
        if self.hung_up_at is None and not self._closing_ours and self.stage != "quit":
            self.hung_up_at = self.stage

    async def _handle_client(self) -> None:
        self._serving = True
        try:
            await self._admit_and_serve()
        except ConnectionError:
            # The client reset the connection while a reply was being written:
            # a normal hang-up (counted and logged by session_over), no traceback.
            pass
        finally:
            self._serving = False
            await self._guard.session_over(self.hung_up_at, cut_off=self.cut_off)

    async def _admit_and_serve(self) -> None:
        if self._ctx.proxy is not None and self._proxy_data is None:
            await self._read_proxy_and_serve(self._ctx.proxy)
            return
        if self._proxy_data is not None:  # the header came before the TLS handshake
            admitted = await self.admit_proxied(self._proxy_data)
        else:
            admitted = await self._admit()
        if admitted:
            await super()._handle_client()
        else:
            self._writer.close()

    async def _read_proxy_and_serve(self, gate: ProxyGate) -> None:
        if not gate.trusts(self._guard.client_ip):
            self._proxy_failed("untrusted_peer")
            self._writer.close()
            return
        self.stage = "proxy"
        # aiosmtpd reads the header, then calls handle_PROXY -> admit_proxied.
        await super()._handle_client()
        if not self._proxy_seen:
            self._proxy_failed("invalid")

    async def admit_proxied(self, data: ProxyData) -> bool:
        """A trusted proxy's valid header arrived: admit the client it names, or refuse it."""
        self._proxy_seen = True
        self._reset_timeout()
        ip = ProxyGate.client_ip(data, self._guard.client_ip)
        if ip is None:
            self._proxy_failed("no_address")
            return False
        self._guard.client_ip = ip
        self._guard.health_check = ProxyGate.speaks_for_itself(data)
        self.stage = "connect"
        return await self._admit(trusted_proxy=self._guard.health_check)

    async def _admit(self, *, trusted_proxy: bool = False) -> bool:
        """Apply the checks before the greeting; False after a refusal was written."""
        refusal = self._guard.refusal_at_connect(trusted_proxy=trusted_proxy)
        if refusal is None:
            refusal = self._claim_slot()
        if refusal is None:
            refusal = await self._early_talker()
        if refusal is None:
            self._admitted = True
            return True
        self._closing_ours = True
        await self.push(str(refusal))
        return False

    def _claim_slot(self) -> Reply | None:
        ip = self._guard.client_ip
        over = self._ctx.connections.admit(ip)
        if over is None:
            self._slot_ip = ip
            return None
        reply, reason = over
        self._ctx.door.warning("client refused", reason, client_ip=ip)
        self._ctx.refused(reason)
        return reply

    async def _early_talker(self) -> Reply | None:
        # Postfix postscreen's pregreet test: a first greeting line, then silence.
        # A real SMTP client waits for the last line; spam engines talk at once.
        wait = self._ctx.limits.pregreet_wait
        if wait <= 0:
            return None
        await self.push(f"220-{self.hostname} {self.__ident__}")
        try:
            await asyncio.wait_for(self._reader.read(1), wait)
        except TimeoutError:
            return None
        self._ctx.door.warning("client refused", "early_talker", client_ip=self._guard.client_ip)
        self._ctx.refused("early_talker")
        return codes.EARLY_TALKER

    def _proxy_failed(self, reason: str) -> None:
        self._closing_ours = True  # ccguard closes: not a client hang-up
        peer = self.session.peer if self.session is not None else None
        proxy_refused(self._ctx, str(peer[0]) if isinstance(peer, tuple) else "", reason)

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            self._tls_failed(error)
            return ""  # aiosmtpd closes the connection unanswered: no reply is written
        if isinstance(error, asyncio.IncompleteReadError | ConnectionError) and (
            self.hung_up_at is not None or self._closing_ours
        ):
            # The client is gone, but the cancellation aiosmtpd gave the session
            # when it went was lost (asyncio.wait_for in aiosmtplib, Python 3.11,
            # returned the upstream's reply instead): deliver it again, so the
            # hang-up ends the session like any other (session_over logs it).
            self._writer.close()
            raise asyncio.CancelledError
        return await super().handle_exception(error)

    def _tls_failed(self, error: TLSSetupException) -> None:
        reason, detail = handshake_failure(error)
        guard = self._guard
        self._ctx.door.warning(
            "tls handshake failed",
            reason,
            kind="starttls",
            client_ip=guard.client_ip,
            **({"queue_id": guard.queue_id} if guard.in_transaction else {}),
            detail=detail,
        )
        if self._ctx.metrics is not None:
            self._ctx.metrics.smtp_tls_failed(reason)

    def mark_reply(self, kind: ReplyKind) -> None:
        """The next final reply is of ``kind``, for the error count (set where it is produced)."""
        self._errors.mark(kind)

    async def push(self, status: str | bytes | None) -> None:
        # None: handle_exception re-raised a lost cancellation.  Cut off: the 421 was
        # the last word (a command pipelined after it is still answered by aiosmtpd).
        if status is None or self.cut_off:
            return
        raw = status.encode("utf-8", "surrogateescape") if isinstance(status, str) else status
        raw = _TRANSLATED.get(raw, raw)
        if raw == _EMPTY_AUTH_LINE:
            return
        if raw == _TOO_MANY_UNKNOWN:
            self._too_many_errors()  # aiosmtpd closes the connection next
            return
        if len(raw) == 3 or raw[3:4] == b" ":
            self._guard.observe_reply(self.stage, int(raw[:3]))
            delay = self._errors.reply(raw) if self._admitted else 0.0
            if delay:
                # Postfix's smtpd_error_sleep_time; a hang-up or shutdown cancels the
                # session's task, and with it this wait.
                await asyncio.sleep(delay)
        await super().push(raw)
        if self._errors.exhausted and not self._in_command:
            self._cut_if_exhausted()

    def _cut_if_exhausted(self) -> None:
        # A transaction holding an accepted recipient is never cut in its middle: the
        # limit applies once it ends (end of DATA, RSET, its upstream failing).
        if self._errors.exhausted and not self._guard.holds_recipients:
            self._too_many_errors()

    def _too_many_errors(self) -> None:
        """[limits] hard_error_limit reached: say 421, log, count and close."""
        if self.transport is None or self.transport.is_closing():
            return
        self.cut_off = True
        guard = self._guard
        self._ctx.log.warning(
            "client disconnected",
            client_ip=guard.client_ip,
            **({"queue_id": guard.queue_id} if guard.in_transaction else {}),
            reason="too_many_errors",
        )
        self._ctx.disconnected("too_many_errors")
        self.say_and_close(codes.TOO_MANY_ERRORS)

    def _timeout_cb(self) -> None:
        if self.stage == "proxy":  # the load balancer sent no header: nothing to say
            self._proxy_seen = True
            self._proxy_failed("timeout")
            if self.transport is not None:
                self.transport.close()
            return
        self.say_and_close(codes.IDLE_TIMEOUT)

    def say_and_close(self, reply: codes.Reply) -> None:
        """Write ``reply`` and close the connection (timeouts, shutdown)."""
        if self.transport is None or self.transport.is_closing():
            return
        self._closing_ours = True
        self._guard.observe_reply(self.stage, reply.code)  # counted like every other reply
        with contextlib.suppress(Exception):
            self._writer.write(str(reply).encode() + b"\r\n")
        self.transport.close()
