"""GuardSMTP's overrides of aiosmtpd commands: AUTH (checked off the loop) and DATA.

:class:`CommandOverrides` sits between aiosmtpd's :class:`~aiosmtpd.smtp.SMTP`
and :class:`~relay.smtp.server.GuardSMTP`, which sets the attributes it declares.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Session, syntax

from relay import codes
from relay.smtp.auth import PendingLogin
from relay.smtp.context import FrontContext
from relay.smtp.data import DataOutcome, read_data
from relay.smtp.limits import ErrorCount, ReplyKind
from relay.smtp.mailpath import plain_address
from relay.smtp.session import SessionHandler

__all__ = ["CommandOverrides"]

_DATA_REFUSALS = {
    DataOutcome.LINE_TOO_LONG: codes.LINE_TOO_LONG,
    DataOutcome.TOO_BIG: codes.MESSAGE_TOO_BIG,
    DataOutcome.NO_BUDGET: codes.INSUFFICIENT_STORAGE,
}


class _Session(Session):
    """aiosmtpd's Session without the deprecation warning its ``login_data``
    setter logs on every successful AUTH (smtp_AUTH sets it itself)."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class CommandOverrides(SMTP):
    """aiosmtpd's AUTH and DATA commands as ccguard runs them."""

    _ctx: FrontContext
    _guard: SessionHandler
    _errors: ErrorCount
    hung_up_at: str | None

    def _create_session(self) -> Session:
        return _Session(self.loop)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        if self._ctx.auth is None:  # not "538 encryption required": TLS would not help
            await self.push(str(codes.AUTH_NOT_ENABLED))
            return
        await super().smtp_AUTH(arg)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._checked(await super().auth_LOGIN(_, args))

    async def _checked(self, result: AuthResult) -> AuthResult:
        """aiosmtpd's parsed credentials, checked without blocking the loop (relay.smtp.auth)."""
        pending = result.auth_data
        if self._ctx.auth is None or not isinstance(pending, PendingLogin):
            return result
        checked = await self._ctx.auth.check(self._guard.client_ip, pending)
        if checked.message == str(codes.AUTH_THROTTLED):  # a 4xx, yet the client's doing
            self._errors.mark(ReplyKind.FAULT)
        return checked

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        plain = plain_address(arg)  # aiosmtpd's parser costs ~30 µs a command
        if plain is None:
            return super()._getaddr(arg)
        address, rest = plain
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest

    async def smtp_DATA(self, arg: str) -> None:
        if arg or self.envelope is None or not self.envelope.rcpt_tos:
            in_mail = self.envelope is not None and self.envelope.mail_from is not None
            if not arg and in_mail and self._guard.excuse_data_without_rcpt():
                # "503 need RCPT" after the upstream refused every recipient: a client
                # may have sent DATA before it read those refusals, but ccguard offers
                # no PIPELINING, so only the first of a transaction is let off.
                self._errors.mark(ReplyKind.NOT_THE_CLIENTS)
            await super().smtp_DATA(arg)  # a syntax error or 503: the transaction goes on
            return
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        try:
            await self._receive_message()
        finally:
            # No DATA hook runs for an oversized message, an over-long line or
            # one over the in-flight budget: the upstream transaction must not stay open.
            # (After a hang-up, session_over ends it and says so.)
            if self.hung_up_at is None:
                await self._guard.end_transaction()

    async def _receive_message(self) -> None:
        """aiosmtpd's DATA, reading into one buffer (see :mod:`relay.smtp.data`)."""
        assert self.envelope is not None and not self._decode_data
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            result = await read_data(
                self._reader,
                size_limit=self.data_size_limit,
                line_limit=self.line_length_limit,
                fits=self._guard.data_fits,
                refused=self._guard.data_refused,
            )
        except asyncio.CancelledError:
            self._writer.close()  # the connection was reset during DATA
            raise
        refusal = _DATA_REFUSALS.get(result.outcome)
        if refusal is not None:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(str(refusal))
            return
        self.envelope.content = self.envelope.original_content = result.content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)
