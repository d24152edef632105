"""One client connection: the aiosmtpd hooks, proxying MAIL/RCPT to the upstream live.

Like Postfix's before-queue proxy filter, the upstream transaction is opened
when the client says MAIL FROM and each RCPT is answered with the upstream's
own reply, so a refused recipient is refused to the client.  At end of DATA
the message is inspected, the verdict carried out, and only then answered.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from relay import codes
from relay.codes import Reply
from relay.envelope import Envelope
from relay.errors import UpstreamError
from relay.inspect import ParsedMessage, parse_message
from relay.smtp.budget import Reservation
from relay.smtp.context import FrontContext
from relay.smtp.limits import ReplyKind
from relay.smtp.session_budget import InflightHooks, announced_size
from relay.smtp.session_log import log_abandoned, log_transaction, loggable_cause
from relay.smtp.trace import new_queue_id, received_header
from relay.upstream import UpstreamTransaction

if TYPE_CHECKING:
    from relay.smtp.server import GuardSMTP

__all__ = ["SessionHandler"]

_PARSE_INLINE_BYTES = 256 * 1024


class SessionHandler(InflightHooks):
    """aiosmtpd handler for one connection (a new one per connection)."""

    def __init__(self, ctx: FrontContext) -> None:
        self._ctx = ctx
        self._server: GuardSMTP | None = None
        self.client_ip = ""
        self.queue_id = ""
        self._txn: UpstreamTransaction | None = None
        self._started = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.in_transaction = False
        self._message_taken = False
        self._rcpt_count = 0
        self.rcpt_refused = False  # the upstream refused a recipient of this transaction
        self._data_excused = False  # its first DATA without a recipient was let off
        self._front: dict[str, Any] = {}  # _front_fields() when the transaction began
        self._reservation: Reservation | None = None
        self._forgotten = False
        #: A trusted load balancer speaking for itself (PROXY LOCAL): greeted, never relayed.
        self.health_check = False

    # -- connection ---------------------------------------------------------

    def connected(self, server: GuardSMTP, peer: Any) -> None:
        self._server = server
        self.client_ip = str(peer[0]) if isinstance(peer, tuple) else ""
        self._ctx.sessions.add(self)
        if self._ctx.metrics is not None:
            self._ctx.metrics.session_opened()

    def disconnected(self, *, serving: bool) -> None:
        """The connection is gone; ``serving`` if the session's task still runs
        (its :meth:`session_over` then ends the transaction and forgets the session)."""
        self._server = None
        if not serving:
            self._forget()

    async def session_over(self, hung_up_at: str | None, *, cut_off: bool = False) -> None:
        """However the session ended (QUIT, hang-up, timeout, shutdown), close or
        return its upstream transaction.  Called last by the session's own task.

        ``hung_up_at`` is the command the client had got to when it hung up
        (reset or close without QUIT), ``None`` if it did not; ``cut_off``: ccguard
        closed it for [limits] hard_error_limit.
        """
        stage = self._hangup_stage(hung_up_at)
        if stage is not None and self._ctx.metrics is not None:
            self._ctx.metrics.client_hung_up(stage)
        try:
            if self._txn is not None or self.in_transaction:
                outcome = "client disconnected" if stage is not None else "no message"
                outcome = "too many errors" if cut_off else outcome
                # Its own task, so a second cancellation of the session (EOF, then
                # the connection lost) cannot cut the RSET short; shutdown waits for it.
                ending = asyncio.ensure_future(self.end_transaction(outcome, stage=stage))
                self._ctx.sessions.track(ending)
                await asyncio.shield(ending)
        finally:
            self._forget()

    def _hangup_stage(self, hung_up_at: str | None) -> str | None:
        if hung_up_at is None:
            return None
        in_flight = self.in_transaction and hung_up_at in ("mail", "rcpt", "data")
        return hung_up_at if in_flight else "none"

    def _forget(self) -> None:
        if self._reservation is not None:  # e.g. DATA after the transaction had failed
            self._reservation.release()
            self._reservation = None
        if self._forgotten:
            return
        self._forgotten = True
        self._ctx.sessions.discard(self)
        if self._ctx.metrics is not None:
            self._ctx.metrics.session_closed()

    def refusal_at_connect(self, *, trusted_proxy: bool = False) -> Reply | None:
        """The reply that refuses this client outright, or ``None`` to greet it.

        ``trusted_proxy``: the client is a ``proxy_trusted`` load balancer speaking
        for itself (its health checks), which passes the network check."""
        if self._ctx.sessions.closing:
            return codes.SHUTTING_DOWN
        if not trusted_proxy and self._ctx.access.refused_at_connect(self.client_ip):
            self._ctx.door.warning("client refused", "network", client_ip=self.client_ip)
            self._ctx.refused("network")
            return codes.ACCESS_DENIED_CONNECT
        return None

    async def handle_PROXY(self, server: GuardSMTP, session: Any, envelope: Any, data: Any) -> bool:
        """aiosmtpd hook: a trusted load balancer's PROXY header names the real client."""
        return await server.admit_proxied(data)

    def close_for_shutdown(self) -> None:
        if self._server is not None:
            self._server.say_and_close(codes.SHUTTING_DOWN)

    def observe_reply(self, stage: str, code: int) -> None:
        if self._ctx.metrics is not None:
            self._ctx.metrics.observe_reply(stage, code)

    # -- transaction --------------------------------------------------------

    def _begin_transaction(self) -> None:
        self.queue_id = new_queue_id()
        self._started = time.monotonic()
        self.in_transaction = True
        self._message_taken = False
        self._rcpt_count = 0
        self.rcpt_refused = False
        self._data_excused = False
        # AUTH and STARTTLS cannot change inside a transaction; kept for its log
        # line, which may be written after the connection is gone (a hang-up).
        self._front = self._front_fields()
        self._ctx.sessions.update()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._ctx.settings.transaction_timeout, self._expired)

    def _expired(self) -> None:
        self._ctx.log.warning("transaction timeout", queue_id=self.queue_id)
        if self._server is not None:
            self._server.say_and_close(codes.TRANSACTION_TIMEOUT)

    async def end_transaction(self, outcome: str = "no message", stage: str | None = None) -> None:
        """Abort whatever is still open upstream and forget the transaction.

        ``outcome`` and ``stage`` go into the transaction's log line when no
        message came (e.g. ``client disconnected`` at ``rcpt``).
        """
        txn, self._txn = self._txn, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._reservation is not None:
            self._reservation.release()
            self._reservation = None
        try:
            if txn is not None:
                await txn.abort()
        finally:
            if self.in_transaction:
                self.in_transaction = False
                self._ctx.sessions.update()
                if not self._message_taken:
                    log_abandoned(
                        self._ctx,
                        self.queue_id,
                        self.client_ip,
                        self._front,
                        recipients=self._rcpt_count,
                        started=self._started,
                        outcome=outcome,
                        stage=stage,
                    )

    @property
    def holds_recipients(self) -> bool:
        """A live transaction holds a recipient the upstream accepted (not aiosmtpd's
        envelope, which keeps them after the upstream failed)."""
        return self.in_transaction and self._rcpt_count > 0

    def excuse_data_without_rcpt(self) -> bool:
        """True once per transaction whose recipients the upstream all refused: that
        first "503 need RCPT" is not counted (a client may send DATA regardless)."""
        excused = self.in_transaction and self.rcpt_refused and not self._data_excused
        self._data_excused = self._data_excused or excused
        return excused

    # -- aiosmtpd hooks -----------------------------------------------------

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self._ctx.sessions.closing:
            return str(codes.SHUTTING_DOWN)
        if not address.isascii() and "SMTPUTF8" not in (o.upper() for o in options):
            return self._reply(codes.NEEDS_SMTPUTF8, ReplyKind.FAULT)  # Postfix counts it
        refusal = self._mail_refusal(address)
        if refusal is not None:  # access, relay or sender binding: the client's doing
            return self._reply(refusal, ReplyKind.FAULT)
        if not self._ctx.rate.allow(self._auth_user(), self.client_ip):
            return self._rate_limited()
        await self.end_transaction()
        self._begin_transaction()
        if not self._reserve(announced_size(options)):
            await self.end_transaction()
            return str(codes.INSUFFICIENT_STORAGE)
        try:
            self._txn = await self._ctx.upstream.begin(_sender(address), options)
        except UpstreamError as exc:
            self._ctx.log.warning(
                "upstream did not accept MAIL FROM",
                queue_id=self.queue_id,
                kind=exc.kind,
                reply_code=exc.reply.code,
                **loggable_cause(exc),
            )
            await self.end_transaction()
            return self._reply(exc.reply, ReplyKind.NOT_THE_CLIENTS)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return str(codes.SENDER_OK)

    def _rate_limited(self) -> str:
        self._ctx.log.warning("rate limited", client_ip=self.client_ip)
        if self._ctx.metrics is not None:
            self._ctx.metrics.rate_limited()
        return self._reply(codes.RATE_LIMITED, ReplyKind.FAULT)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self._ctx.settings.max_recipients:
            return self._reply(codes.TOO_MANY_RECIPIENTS, ReplyKind.OVER_MAX_RECIPIENTS)
        if self._txn is None:
            # Its upstream failed and the client was told so: it goes on regardless.
            return self._reply(codes.UPSTREAM_UNAVAILABLE, ReplyKind.FAULT)
        if not address.isascii() and not envelope.smtp_utf8:
            return self._reply(codes.NEEDS_SMTPUTF8, ReplyKind.NOT_THE_CLIENTS)
        try:
            reply = await self._txn.rcpt(address, options)
        except UpstreamError as exc:
            await self.end_transaction()
            return self._reply(exc.reply, ReplyKind.NOT_THE_CLIENTS)
        if reply.is_success:
            self._rcpt_count += 1
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.append(tuple(options))
        else:
            self.rcpt_refused = True
        return self._reply(reply, ReplyKind.NOT_THE_CLIENTS)  # the upstream's own answer

    async def handle_RSET(self, server: Any, session: Any, envelope: Any) -> str:
        await self.end_transaction()
        return str(codes.RSET_OK)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        # From here the message's own task owns the upstream transaction, shielded
        # so a client that hangs up cannot leave a delivery or split half done.
        txn, self._txn = self._txn, None
        if txn is None:
            return str(codes.UPSTREAM_UNAVAILABLE)
        self._message_taken = True
        env = self._envelope(session, envelope)
        task = asyncio.ensure_future(self._finish_message(txn, env, envelope.original_content))
        self._ctx.sessions.track(task)
        self._hand_over_reservation(task)
        reply = await asyncio.shield(task)
        # Accepted, or the verdict (or the upstream's answer) on this content: never an error.
        accepted = ReplyKind.ACCEPTED if reply.code < 300 else ReplyKind.NOT_THE_CLIENTS
        return self._reply(reply, accepted)

    async def _finish_message(self, txn: UpstreamTransaction, env: Envelope, data: bytes) -> Reply:
        """Decide, act, log and count one message; the transaction is always closed.

        The client's bytes are parsed once, here (line endings normalised to
        CRLF): every later stage sees that one message."""
        try:
            started = time.monotonic()
            message = await _parse(data)
            del data  # only the normalised bytes travel on
            verdict = await self._ctx.decider.decide(env, message)
            inspect_seconds = time.monotonic() - started
            now = datetime.now(UTC)
            trace = received_header(env, hostname=self._ctx.settings.hostname, now=now)
            try:
                reply = await self._ctx.dispatcher.act(env, message, verdict, txn, trace)
            except UpstreamError as exc:
                reply = exc.reply
        finally:
            await txn.abort()  # a no-op when the dispatcher already finished it
        log_transaction(self._ctx, env, message, verdict, reply, inspect_seconds, self._started)
        if self._ctx.metrics is not None:
            self._ctx.metrics.observe_message(verdict, message.size, inspect_seconds)
            if message.normalised:
                self._ctx.metrics.line_endings_normalised_message()
        return reply

    async def handle_exception(self, error: Exception) -> str:
        ref = self.queue_id or new_queue_id()
        self._ctx.log.error(
            "internal error", queue_id=ref, error=type(error).__name__, exc_info=error
        )
        await self.end_transaction()
        internal = codes.INTERNAL_ERROR.with_text(f"{codes.INTERNAL_ERROR.text} (ref {ref})")
        return self._reply(internal, ReplyKind.NOT_THE_CLIENTS)

    # -- helpers ------------------------------------------------------------

    def _reply(self, reply: Reply, kind: ReplyKind) -> str:
        """``reply``, marked ``kind`` for the session's error count."""
        if self._server is not None:
            self._server.mark_reply(kind)
        return str(reply)

    def _auth_user(self) -> str | None:
        """Who this session logged in as: one answer for the rate limit, the sender
        check, the envelope and the log."""
        return self._server.authenticated_user if self._server is not None else None

    def _mail_refusal(self, address: str) -> Reply | None:
        """530 when this client may not relay (network, AUTH), 553 for a sender not its own,
        550 for a load balancer's health check."""
        if self.health_check:
            self._ctx.log.warning(
                "relay refused", client_ip=self.client_ip, reason="proxy health check"
            )
            return codes.PROXY_HEALTH_CHECK
        user = self._auth_user()
        refusal = self._ctx.access.mail_refusal(self.client_ip, user, _sender(address))
        if refusal is not None:
            reason = "sender not owned" if user else "authentication required"
            self._ctx.log.warning("relay refused", client_ip=self.client_ip, reason=reason)
        return refusal

    def _front_fields(self) -> dict[str, Any]:
        """Envelope fields only the connection knows: AUTH user, TLS protocol and cipher."""
        server = self._server
        tls = server.tls if server is not None else None
        return {
            "auth_user": self._auth_user(),
            "tls_version": tls.version if tls else "",
            "tls_cipher": tls.cipher if tls else "",
        }

    def _envelope(self, session: Any, envelope: Any) -> Envelope:
        return Envelope(
            mail_from=_sender(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            mail_options=tuple(envelope.mail_options),
            client_ip=self.client_ip,
            client_helo=session.host_name or "",
            queue_id=self.queue_id,
            rcpt_options=tuple(envelope.rcpt_options),
            **self._front_fields(),
        )


async def _parse(data: bytes) -> ParsedMessage:
    """:func:`parse_message`, in a worker thread for a big message (normalising
    many megabytes of bare line endings must not stall every other session)."""
    if len(data) < _PARSE_INLINE_BYTES:
        return parse_message(data)
    return await asyncio.to_thread(parse_message, data)


def _sender(address: str) -> str:
    return "" if address in ("<>", "") else address
