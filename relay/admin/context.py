"""What every admin request handler needs, and the shared login / session checks."""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass, field
from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from relay.admin.review import Review
from relay.admin.sessions import COOKIE_NAME, Session, SessionCodec
from relay.admin.throttle import LoginThrottle
from relay.admin.users import UserDB
from relay.settings import AdminSettings

__all__ = ["AdminContext", "LoginOutcome", "basic_credentials", "client_ip", "context_of"]

LoginOutcome = Literal["ok", "bad", "throttled"]


@dataclass(slots=True)
class AdminContext:
    """The admin app's state: settings, users, sessions, throttle and the audited review."""

    settings: AdminSettings
    review: Review
    users: UserDB
    codec: SessionCodec
    throttle: LoginThrottle = field(default_factory=LoginThrottle)

    @property
    def secure_cookies(self) -> bool:
        """Cookies get ``Secure`` when the admin listener serves TLS."""
        return bool(self.settings.tls_cert)

    def session(self, request: Request) -> Session | None:
        """The request's valid session (logged in or not), or None."""
        return self.codec.decode(request.cookies.get(COOKIE_NAME))

    def user_session(self, request: Request) -> Session | None:
        """The request's session if it belongs to a user who still exists."""
        session = self.session(request)
        if session is None or session.user is None or not self.users.exists(session.user):
            return None
        return session

    def set_cookie(self, response: Response, session: Session) -> None:
        """Attach ``session`` as the HttpOnly, SameSite=Strict session cookie."""
        response.set_cookie(
            COOKIE_NAME,
            self.codec.encode(session),
            max_age=int(self.codec.max_age),
            httponly=True,
            samesite="strict",
            secure=self.secure_cookies,
            path="/",
        )

    def clear_cookie(self, response: Response) -> None:
        """Remove the session cookie from the browser."""
        response.delete_cookie(
            COOKIE_NAME, httponly=True, samesite="strict", secure=self.secure_cookies, path="/"
        )

    async def check_login(self, ip: str, name: str, password: str) -> tuple[LoginOutcome, float]:
        """Throttled password check; returns the outcome and, if throttled, seconds to wait.

        Failures are audited here; the caller audits successes where they matter.
        """
        wait = self.throttle.wait_for(ip, name)
        if wait > 0:
            await self.review.audit(self._actor(name), "login", "-", "throttled", f"ip={ip}")
            return "throttled", wait
        if await asyncio.to_thread(self.users.verify, name, password):
            self.throttle.success(ip, name)
            return "ok", 0.0
        self.throttle.failure(ip, name)
        await self.review.audit(self._actor(name), "login", "-", "failed", f"ip={ip}")
        return "bad", 0.0

    def _actor(self, name: str) -> str:
        # A name that is no user may be a password typed in the wrong field: never record it.
        return name if self.users.exists(name) else "(unknown user)"


def context_of(request: Request) -> AdminContext:
    """The :class:`AdminContext` of the app serving ``request``."""
    ctx: AdminContext = request.app.state.ccguard_admin
    return ctx


def client_ip(request: Request) -> str:
    """The peer address of the request ("-" if unknown)."""
    return request.client.host if request.client else "-"


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """User name and password from an ``Authorization: Basic`` header, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None
