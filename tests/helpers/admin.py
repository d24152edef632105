"""Shared pieces for the admin tests: a recording upstream, an in-loop uvicorn, seed data."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette

from relay.actions.release import QuarantineReleaser
from relay.admin import create_admin_app
from relay.credentials.hashing import HashingPool
from relay.credentials.throttle import LoginThrottle
from relay.credentials.users import UserDB
from relay.httpserver import HttpServer
from relay.inspect.domains import DomainMatcher
from relay.observability.metrics import Metrics
from relay.quarantine import SqliteStore
from relay.quarantine.store import NewMessage
from relay.settings import AdminSettings, UpstreamSettings
from relay.upstream import UpstreamClient
from tests.helpers.upstream import RecordingUpstream

PASSWORD = "correct horse battery staple"
EXTERNAL_RCPTS = tuple(
    f"trainee{i}@{dom}"
    for i, dom in enumerate(["example.com", "example.net", "mail.example.com"] * 4)
)
INTERNAL_RCPTS = ("hr@example.org", "boss@example.org")


@contextlib.asynccontextmanager
async def recording_upstream() -> AsyncIterator[RecordingUpstream]:
    upstream = await RecordingUpstream().start()
    try:
        yield upstream
    finally:
        await upstream.stop()


@contextlib.asynccontextmanager
async def serve_app(app: Starlette) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 (ephemeral port) in this loop; yields the URL."""
    server = HttpServer("admin", app, "127.0.0.1:0")
    await server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


class ListLog:
    """Collects structured log events so tests can read them."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))


def make_message(
    subject: str = "Welcome to the training",
    *,
    external: Sequence[str] = EXTERNAL_RCPTS,
    internal: Sequence[str] = INTERNAL_RCPTS,
    html: str | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Coordinator <coordinator@example.org>"
    msg["To"] = ", ".join(internal)
    msg["Cc"] = ", ".join(external)
    msg["Subject"] = subject
    msg["Message-ID"] = "<training-1@example.org>"
    msg.set_content("Dear all,\nthe training starts on Monday.\n")
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg.as_bytes()


def new_message(subject: str = "Welcome to the training", **kw: Any) -> NewMessage:
    external = kw.pop("external", EXTERNAL_RCPTS)
    raw = make_message(subject, external=external, html=kw.pop("html", None))
    domains = {a.split("@")[1] for a in external}
    return NewMessage(
        mail_from="coordinator@example.org",
        rcpt_tos=(*INTERNAL_RCPTS, *external),
        message=raw,
        client_ip="127.0.0.1",
        client_helo="app.example.org",
        queue_id="Q1",
        rule=kw.pop("rule", "bulk-external"),
        reason=f"{len(external)} external addresses visible",
        exposure={
            "visible_total": len(external) + len(INTERNAL_RCPTS),
            "visible_internal": len(INTERNAL_RCPTS),
            "visible_external": len(external),
            "external_domains": len(domains),
            "unparseable": 0,
            "per_header": {"to": len(INTERNAL_RCPTS), "cc": len(external)},
            "header_too_large": False,
        },
        **kw,
    )


def basic(user: str = "alice", password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def write_config(path: Path, *, db: Path, users: Path, upstream_port: int) -> Path:
    path.write_text(
        f"""
[upstream]
host = "127.0.0.1"
port = {upstream_port}
starttls = "off"
timeout = 5
connect_timeout = 2

[organisation]
internal_domains = ["example.org"]

[quarantine]
database = "{db}"

[admin]
users_file = "{users}"
""",
        encoding="utf-8",
    )
    return path


def real_releaser(port: int) -> tuple[QuarantineReleaser, UpstreamClient]:
    """The relay's own releaser and upstream client, pointed at 127.0.0.1:port."""
    settings = UpstreamSettings(
        host="127.0.0.1", port=port, starttls="off", timeout=20, connect_timeout=2
    )
    client = UpstreamClient(settings, local_hostname="ccguard.example.org")
    return QuarantineReleaser(client, DomainMatcher(["example.org"])), client


@dataclass
class Env:
    """A running admin app with its store, upstream, log and an HTTP client."""

    url: str
    store: SqliteStore
    upstream: RecordingUpstream
    log: ListLog
    client: httpx.AsyncClient
    settings: AdminSettings
    metrics: Metrics

    def refused(self, reason: str) -> float:
        """How many admin requests were refused for ``reason`` so far."""
        name = "ccguard_admin_requests_refused_total"
        return self.metrics.registry.get_sample_value(name, {"reason": reason}) or 0.0


@contextlib.asynccontextmanager
async def admin_env(
    tmp_path: Path, hashing: HashingPool | None = None, **settings: Any
) -> AsyncIterator[Env]:
    """Upstream + SQLite store + users file (alice) + admin app on uvicorn + httpx client;
    ``hashing`` replaces the default password-check pool."""
    async with recording_upstream() as upstream:
        store = SqliteStore(tmp_path / "q.db")
        await store.open()
        users = UserDB(tmp_path / "users.json")
        if not users.exists("alice"):  # a second env on the same files keeps the same users
            users.set_password("alice", PASSWORD)
        log = ListLog()
        releaser, upstream_client = real_releaser(upstream.port)
        admin_settings = AdminSettings(users_file=str(tmp_path / "users.json"), **settings)
        metrics = Metrics()
        app = create_admin_app(
            settings=admin_settings,
            store=store,
            releaser=releaser,
            users=users,
            log=log,
            throttle=LoginThrottle(free=5, base=30.0),
            metrics=metrics,
            hashing=hashing,
            matcher=DomainMatcher(["example.org"]),
        )
        try:
            async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
                yield Env(url, store, upstream, log, client, admin_settings, metrics)
        finally:
            await upstream_client.close()
            await store.close()


async def audit_of(env: Env, target: str | None = None) -> list[tuple[str, str, str]]:
    """(actor, action, result) of the audit entries, oldest first."""
    entries = await env.store.list_audit(target=target)
    return [(e.actor, e.action, e.result) for e in reversed(entries)]
