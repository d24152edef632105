"""SMTP AUTH PLAIN/LOGIN checked against ``[smtp.auth] users_file``, off the event loop.

aiosmtpd parses the mechanisms and calls its ``authenticator`` synchronously
(``SMTP._authenticate`` returns the callback's result without awaiting it), so
an scrypt check there would stall every session for tens of milliseconds.
:func:`capture_credentials` is that callback: it only hands the credentials
back as :class:`PendingLogin`; :class:`GuardSMTP` then awaits
:meth:`SmtpAuthenticator.check`, which runs scrypt on the shared
:class:`~relay.credentials.HashingPool` behind the same
:class:`~relay.credentials.LoginThrottle` as the admin login (docs/smtp-auth.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aiosmtpd.smtp import AuthResult, LoginPassword

from relay import codes
from relay.credentials import HashingBusy, HashingPool, LoginThrottle, UserDB, UsersFileError

if TYPE_CHECKING:
    from relay.smtp.door_log import DoorLog

__all__ = [
    "AuthMetrics", "PendingLogin", "SmtpAuthenticator", "capture_credentials", "session_user",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """Credentials aiosmtpd parsed, not checked yet (never logged: ``repr`` hides them)."""

    mechanism: str
    login: bytes
    password: bytes

    def __repr__(self) -> str:
        return f"PendingLogin({self.mechanism})"


def capture_credentials(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    """aiosmtpd ``authenticator``: defer the check (see the module docstring)."""
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    pending = PendingLogin(mechanism, bytes(auth_data.login), bytes(auth_data.password))
    return AuthResult(success=False, handled=False, auth_data=pending)


def session_user(session: Any) -> str | None:
    """The user an aiosmtpd session logged in as, or ``None``: the one answer for
    the rate limit, the sender check, the envelope and the log.

    :meth:`SmtpAuthenticator.check` puts the user name in ``auth_data``; anything
    else there (aiosmtpd's raw credentials) is not a login ccguard checked.
    """
    if session is None or not getattr(session, "authenticated", False):
        return None
    name = getattr(session, "auth_data", None)
    return name if isinstance(name, str) else None


class AuthMetrics(Protocol):
    """What AUTH reports (implemented by :class:`relay.observability.Metrics`)."""

    def smtp_auth_attempt(self, mechanism: str, result: str) -> None: ...


class SmtpAuthenticator:
    """Throttled password checks for SMTP AUTH; one per running relay."""

    def __init__(
        self,
        users: UserDB,
        hashing: HashingPool,
        *,
        log: Any,
        redact: Callable[[str], str],
        throttle: LoginThrottle | None = None,
        metrics: AuthMetrics | None = None,
    ) -> None:
        self.users = users
        self._hashing = hashing
        self._throttle = throttle or LoginThrottle()
        self._log = log
        self._redact = redact
        self._metrics = metrics
        #: The door's line limit (a ``DoorLog``, set by ``FrontContext``): AUTH refused
        #: without a password check is as cheap to repeat as a refused connection.
        self.door: DoorLog | None = None

    async def check(self, client_ip: str, pending: PendingLogin) -> AuthResult:
        """The AUTH result for ``pending`` from ``client_ip`` (``auth_data`` = user name).

        A wrong password and an unknown user get the same 535; a client over
        its failure budget, a swamped hashing pool or an unreadable users file
        gets 454 (temporary) without a check.
        """
        name = pending.login.decode("utf-8", "replace")
        password = pending.password.decode("utf-8", "replace")
        async with self._throttle.serialised(client_ip):
            result = await self._check_once(client_ip, name, password)
        self._report(client_ip, pending.mechanism, name, result)
        if result == "success":
            return AuthResult(success=True, auth_data=name, message=str(codes.AUTH_OK))
        reply = {
            "throttled": codes.AUTH_THROTTLED,
            "busy": codes.AUTH_BUSY,
            "error": codes.AUTH_BUSY,
        }.get(result, codes.AUTH_INVALID)
        return AuthResult(success=False, handled=False, message=str(reply))

    async def _check_once(self, ip: str, name: str, password: str) -> str:
        if self._throttle.wait_for(ip, name) > 0:
            return "throttled"
        try:
            ok = await self._hashing.run(self.users.verify, name, password)
        except HashingBusy:
            return "busy"
        except UsersFileError as exc:  # broken file: nobody can log in until it is fixed
            self._log.error("smtp users file unreadable", client_ip=ip, error=str(exc))
            return "error"
        if ok:
            self._throttle.success(ip, name)
            return "success"
        self._throttle.failure(ip, name)
        return "failure"

    def _report(self, ip: str, mechanism: str, name: str, result: str) -> None:
        if self._metrics is not None:
            self._metrics.smtp_auth_attempt(mechanism, result)
        if result == "success":
            self._log.info("smtp auth", client_ip=ip, mechanism=mechanism, user=self.loggable(name))
            return
        # A name that is no user may be a password typed in the wrong field: never log it.
        user = self.loggable(name) if self._known(name) else "(unknown user)"
        fields = {"client_ip": ip, "mechanism": mechanism, "user": user}
        if result == "failure" or self.door is None:
            # A wrong password: bounded by max_failures_per_minute, and fail2ban needs each.
            self._log.warning("smtp auth failed", result=result, **fields)
        else:  # throttled, busy, error: answered at once, one line per AUTH command
            self.door.warning("smtp auth failed", result, **fields)

    def _known(self, name: str) -> bool:
        try:
            return self.users.exists(name)
        except UsersFileError:
            return False

    def loggable(self, name: str) -> str:
        """``name`` as it may appear in logs: redacted when it is an email address."""
        return self._redact(name) if "@" in name else name
