"""What every admin request handler needs, and the shared login / session checks."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from relay.admin.review import Review
from relay.admin.sessions import COOKIE_NAME, Session, SessionCodec
from relay.credentials.hashing import HashingBusy, HashingPool
from relay.credentials.throttle import LoginThrottle
from relay.credentials.users import UserDB
from relay.errors import StoreError
from relay.observability.metrics import Metrics
from relay.settings import AdminSettings

__all__ = [
    "AdminContext",
    "LoginOutcome",
    "basic_credentials",
    "client_ip",
    "context_of",
    "forwarded_client_ip",
    "is_cross_site",
]

LoginOutcome = Literal["ok", "bad", "throttled", "busy"]
#: Seconds a client is told to wait when the password checker is swamped.
BUSY_RETRY_AFTER = 2.0


@dataclass(slots=True)
class AdminContext:
    """The admin app's state: settings, users, sessions, throttle and the audited review."""

    settings: AdminSettings
    review: Review
    users: UserDB
    codec: SessionCodec
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    hashing: HashingPool = field(default_factory=HashingPool)
    metrics: Metrics | None = None

    def count_refusal(self, reason: str) -> None:
        """Count one admin request refused for ``reason`` (too_large, too_deep, cross_site)."""
        if self.metrics is not None:
            self.metrics.admin_refused(reason)

    @property
    def secure_cookies(self) -> bool:
        """Cookies get ``Secure`` when the admin listener serves TLS."""
        return bool(self.settings.tls_cert)

    def session(self, request: Request) -> Session | None:
        """The request's valid session (logged in or not), or None."""
        return self.codec.decode(request.cookies.get(COOKIE_NAME))

    async def user_session(self, request: Request) -> Session | None:
        """The request's logged-in session, if still valid: its user exists with the
        same password as at login, and it was not logged out (here or, before a
        restart or on another instance, as recorded in the audit table)."""
        session = self.session(request)
        if session is None or session.user is None:
            return None
        record = self.users.record(session.user)
        if record is None or not hmac.compare_digest(
            session.stamp, self.codec.fingerprint(session.user, record)
        ):
            return None
        return None if await self._logged_out(session) else session

    async def _logged_out(self, session: Session) -> bool:
        try:
            entries = await self.review.store.list_audit(1, session.revocation_target)
        except StoreError:
            return True  # cannot tell: fail closed
        if entries:
            self.codec.revoke(session)
        return bool(entries)

    def new_user_session(self, user: str) -> Session:
        """A fresh session for ``user``, bound to the password she has now."""
        stamp = self.codec.fingerprint(user, self.users.record(user) or "")
        return Session.new(user, self.codec.now(), stamp)

    async def logout(self, session: Session) -> None:
        """End ``session`` here and, through the audit entry, everywhere and for good."""
        self.codec.revoke(session)
        await self.review.audit(str(session.user), "logout", session.revocation_target, "ok")

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
        """Throttled password check; returns the outcome and, if refused, seconds to wait.

        Attempts from one IP are checked one at a time, and each failure is
        counted before the next attempt is looked at.  Failures are audited
        here; the caller audits successes where they matter.
        """
        async with self.throttle.serialised(ip):
            outcome, wait = await self._check_once(ip, name, password)
        if outcome in ("throttled", "bad"):
            result = "failed" if outcome == "bad" else outcome
            await self.review.audit(self._actor(name), "login", "-", result, f"ip={ip}")
        return outcome, wait

    async def _check_once(self, ip: str, name: str, password: str) -> tuple[LoginOutcome, float]:
        wait = self.throttle.wait_for(ip, name)
        if wait > 0:
            return "throttled", wait
        try:
            ok = await self.hashing.run(self.users.verify, name, password)
        except HashingBusy:
            return "busy", BUSY_RETRY_AFTER
        if ok:
            self.throttle.success(ip, name)
            return "ok", 0.0
        self.throttle.failure(ip, name)
        return "bad", 0.0

    def _actor(self, name: str) -> str:
        # A name that is no user may be a password typed in the wrong field: never record it.
        return name if self.users.exists(name) else "(unknown user)"


def context_of(request: Request) -> AdminContext:
    """The :class:`AdminContext` of the app serving ``request``."""
    ctx: AdminContext = request.app.state.ccguard_admin
    return ctx


def _own_origin(origin: str, request: Request) -> bool:
    """True when ``origin`` names the host this request was sent to (any scheme:
    a reverse proxy may terminate TLS in front of us)."""
    netloc = urlsplit(origin).netloc.lower()
    return bool(netloc) and netloc == request.headers.get("host", "").lower()


def is_cross_site(request: Request) -> bool:
    """True when the browser says the request comes from another site.

    Browsers send cookies and cached Basic credentials with cross-site form
    posts, and a stolen or leaked CSRF token would then be enough; the
    ``Sec-Fetch-Site`` and ``Origin`` headers tell such a post apart.
    ``Sec-Fetch-Site`` decides when present: pages cannot forge it, and under
    our ``Referrer-Policy: no-referrer`` a browser's own same-origin form post
    says ``Origin: null``.  Without it, any ``Origin`` but our own host
    (``null`` included) is refused.  Clients that send neither (curl,
    scripts) are not browsers and are not refused.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site.strip().lower() not in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is not None and not _own_origin(origin, request)


def _trusted(address: str, networks: Sequence[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in networks)


def client_ip(request: Request) -> str:
    """The client's address: the TCP peer ("-" if unknown), or, when the peer is one of
    ``[admin] trusted_proxies``, the address that proxy saw (X-Forwarded-For, read from
    the right, skipping other trusted proxies and anything that is not an IP address)."""
    return forwarded_client_ip(request, context_of(request).settings.trusted_proxies)


def forwarded_client_ip(request: Request, proxies: Sequence[str]) -> str:
    """:func:`client_ip` with the trusted proxies given (for apps without an admin context)."""
    peer = request.client.host if request.client else "-"
    if not proxies or not _trusted(peer, proxies):
        return peer
    hops = ",".join(request.headers.getlist("x-forwarded-for")).split(",")
    for hop in reversed([h.strip() for h in hops if h.strip()]):
        if not _trusted(hop, proxies):
            return hop if _is_ip(hop) else peer
        peer = hop
    return peer


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


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
