"""The admin ASGI app: web UI, JSON API, shipped CSS, and strict security headers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relay.admin.api import api_routes
from relay.admin.api_workbench import workbench_api_routes
from relay.admin.bodies import BodyLimit
from relay.admin.context import AdminContext, context_of
from relay.admin.overview_web import overview_routes
from relay.admin.report import ReportSource
from relay.admin.report_render import add_filters
from relay.admin.requests_web import requests_routes
from relay.admin.review import EventLog, Releaser, Review
from relay.admin.sessions import SessionCodec, load_session_key
from relay.admin.web import web_routes
from relay.admin.web_bulk import bulk_web_routes
from relay.admin.web_workbench import workbench_web_routes
from relay.credentials.hashing import HashingPool
from relay.credentials.throttle import LoginThrottle
from relay.credentials.users import UserDB, UsersFileError
from relay.inspect.domains import DomainMatcher
from relay.observability.metrics import Metrics
from relay.quarantine.store import CLAIM_STALE_AFTER, QuarantineStore
from relay.settings import AdminSettings

if TYPE_CHECKING:
    from relay.review.desk import RequestDesk

__all__ = ["CONTENT_SECURITY_POLICY", "create_admin_app"]

HERE = Path(__file__).parent
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the CSP and friends to every response, and ``no-store`` to all but static files."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cacheable = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in _SECURITY_HEADERS if n not in present]
                if not cacheable and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _datetime(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _datetime_s(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _addr(address: str) -> Markup:
    """An address that may wrap after its ``@`` (and nowhere inside a word), escaped."""
    local, at, domain = address.rpartition("@")
    if not at:
        return escape(address)
    return escape(local) + Markup("@<wbr>") + escape(domain)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


async def _users_file_broken(request: Request, exc: Exception) -> Response:
    """503 (JSON under /api, a page elsewhere) when the users file cannot be read."""
    context_of(request).review.log.info("admin_users_file_unreadable", error=str(exc))
    text = "The admin users file cannot be read; nobody can log in until it is fixed."
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": "users_unavailable", "message": text}, status_code=503)
    templates: Jinja2Templates = request.app.state.ccguard_templates
    values = {"session": None, "title": "Login unavailable", "message": text}
    return templates.TemplateResponse(request, "error.html", values, status_code=503)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.autoescape = True
    templates.env.filters["datetime"] = _datetime
    templates.env.filters["datetime_s"] = _datetime_s
    templates.env.filters["size"] = _size
    templates.env.filters["addr"] = _addr
    return templates


def create_admin_app(
    *,
    settings: AdminSettings,
    store: QuarantineStore,
    releaser: Releaser | None,
    users: UserDB,
    log: EventLog,
    extra_routes: Sequence[BaseRoute] = (),
    throttle: LoginThrottle | None = None,
    codec: SessionCodec | None = None,
    hashing: HashingPool | None = None,
    metrics: Metrics | None = None,
    claim_lease: float = CLAIM_STALE_AFTER,
    matcher: DomainMatcher | None = None,
    review: Review | None = None,
    desk: RequestDesk | None = None,
    report: ReportSource | None = None,
) -> Starlette:
    """The admin web UI + JSON API as an ASGI app (served by uvicorn in the relay's loop).

    ``extra_routes`` (e.g. /metrics, /healthz) are mounted first and need no login.
    ``throttle``, ``codec`` and ``hashing`` replace the default login throttle,
    session codec and password-hashing pool (2 threads, 8 waiting); ``metrics``
    counts refused requests.  Request bodies are capped at ``max_request_bytes``.
    ``matcher`` knows the organisation's domains (recipients are marked internal or
    external; without it, all are external).
    ``report``: the policy and hash key the evidence report shows and uses.
    The session key is ``settings.session_key_file``'s (shared by every instance),
    else ``settings.session_secret``; without either it is random: sessions end at restart.
    ``review`` replaces the audited review built here; ``desk`` (sender self-service,
    relay/review/desk.py) adds the release-request pages and API.
    """
    if codec is None:
        secret = settings.session_secret
        if settings.session_key_file:
            secret = load_session_key(settings.session_key_file)
        codec = SessionCodec(secret, settings.session_max_age)
    routes: list[BaseRoute] = [
        *extra_routes,
        *(requests_routes() if desk is not None else []),
        *api_routes(),
        *workbench_api_routes(),
        *bulk_web_routes(),
        *workbench_web_routes(),
        *web_routes(),
        *overview_routes(),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    context = AdminContext(
        settings=settings,
        review=review or Review(store, releaser, log, claim_lease=claim_lease, metrics=metrics),
        users=users,
        codec=codec,
        throttle=throttle or LoginThrottle(),
        hashing=hashing or HashingPool(),
        metrics=metrics,
    )
    limit = Middleware(
        BodyLimit, limit=settings.max_request_bytes, on_refused=context.count_refusal
    )
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders), limit],
        exception_handlers={UsersFileError: _users_file_broken},
    )
    app.state.ccguard_admin = context
    app.state.ccguard_desk = desk
    app.state.ccguard_templates = _templates()
    app.state.ccguard_matcher = matcher or DomainMatcher(())
    add_filters(app.state.ccguard_templates.env)
    app.state.ccguard_report = report
    return app
