"""``/metrics``, ``/healthz`` and ``/readyz`` as Starlette routes.

Mount :func:`observability_routes` on the admin app (these need no login), or
serve :func:`create_app` on its own ``[metrics] listen`` address with
:func:`make_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.observability.metrics import Metrics
from relay.settings import parse_listen

__all__ = [
    "Check",
    "CheckResult",
    "EmbeddedServer",
    "ReadinessChecks",
    "bound_port",
    "create_app",
    "make_server",
    "observability_routes",
    "run_checks",
]

#: ``(ok, reason)``; the reason is shown to whoever probes /readyz, so no secrets.
CheckResult = tuple[bool, str]
Check = Callable[[], Awaitable[CheckResult]]
#: Either named checks (each bounded by the timeout on its own, run concurrently)
#: or one callable returning every result (bounded by the timeout as a whole).
ReadinessChecks = Mapping[str, Check] | Callable[[], Awaitable[Mapping[str, CheckResult]]]
_REASON_MAX = 200


def _failure(exc: BaseException, timeout: float) -> CheckResult:
    if isinstance(exc, TimeoutError):
        return False, f"no answer within {timeout:g}s"
    return False, f"{type(exc).__name__}: {exc}"[:_REASON_MAX]


async def _bounded(check: Check, timeout: float) -> CheckResult:
    try:
        ok, reason = await asyncio.wait_for(check(), timeout)
    except Exception as exc:
        return _failure(exc, timeout)
    return bool(ok), str(reason)


async def run_checks(checks: ReadinessChecks | None, timeout: float) -> dict[str, CheckResult]:
    """Run the readiness checks; a check that raises or overruns ``timeout`` fails."""
    if checks is None:
        return {}
    if isinstance(checks, Mapping):
        names = list(checks)
        results = await asyncio.gather(*(_bounded(checks[n], timeout) for n in names))
        return dict(zip(names, results, strict=True))
    try:
        found = await asyncio.wait_for(checks(), timeout)
    except Exception as exc:
        return {"readiness": _failure(exc, timeout)}
    return {name: (bool(ok), str(reason)) for name, (ok, reason) in found.items()}


_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class _Endpoints:
    """The three observability handlers and what they need."""

    metrics: Metrics
    checks: ReadinessChecks | None
    readiness_timeout: float
    before_render: Callable[[], Awaitable[None]] | None

    async def metrics_endpoint(self, _: Request) -> Response:
        if self.before_render is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.before_render(), self.readiness_timeout)
        body, content_type = self.metrics.render()
        return Response(body, headers={**_NO_STORE, "Content-Type": content_type})

    async def healthz(self, _: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers=_NO_STORE)

    async def readyz(self, _: Request) -> Response:
        results = await run_checks(self.checks, self.readiness_timeout)
        ready = all(ok for ok, _ in results.values())
        body = {
            "status": "ok" if ready else "unavailable",
            "checks": {n: {"ok": ok, "reason": why} for n, (ok, why) in results.items()},
        }
        return JSONResponse(body, status_code=200 if ready else 503, headers=_NO_STORE)


def observability_routes(
    metrics: Metrics,
    *,
    checks: ReadinessChecks | None = None,
    readiness_timeout: float = 2.0,
    before_render: Callable[[], Awaitable[None]] | None = None,
) -> list[Route]:
    """``GET /metrics``, ``GET /healthz`` and ``GET /readyz`` (HEAD too).

    ``before_render`` runs before each scrape (e.g. to read the quarantine's
    gauges from the store); if it fails, the scrape still answers.

    /readyz answers 200 ``{"status": "ok", "checks": {...}}`` when every check
    passes, else 503 ``{"status": "unavailable", "checks": {name: {"ok",
    "reason"}}}``.  Responses are never cached.
    """
    endpoints = _Endpoints(metrics, checks, readiness_timeout, before_render)
    return [
        Route("/metrics", endpoints.metrics_endpoint, methods=["GET"]),
        Route("/healthz", endpoints.healthz, methods=["GET"]),
        Route("/readyz", endpoints.readyz, methods=["GET"]),
    ]


def create_app(
    metrics: Metrics, *, checks: ReadinessChecks | None = None, readiness_timeout: float = 2.0
) -> Starlette:
    """A Starlette app serving only the observability routes."""
    return Starlette(
        routes=observability_routes(metrics, checks=checks, readiness_timeout=readiness_timeout)
    )


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the application.

    Plain ``uvicorn.Server.serve()`` replaces the SIGINT/SIGTERM handlers while
    it runs, which would bypass ccguard's own graceful shutdown.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(app: Any, listen: str, **config: Any) -> uvicorn.Server:
    """A uvicorn server for ``app`` on ``listen`` (``HOST:PORT``) that logs via our handler.

    ``log_config=None`` stops uvicorn from installing its own (non-JSON)
    handlers; ``proxy_headers=False`` keeps uvicorn from believing any
    X-Forwarded-For (its default trusts 127.0.0.1, so anyone connecting from
    loopback could pick the client IP the admin throttle and audit see); extra
    ``config`` (e.g. ``ssl_certfile``) goes to :class:`uvicorn.Config`.  Run
    ``await server.serve()`` in a task; set ``server.should_exit = True`` and
    await the task to stop it.  The server does not touch signal handlers.
    """
    host, port = parse_listen(listen)
    options: dict[str, Any] = {
        "log_config": None,
        "lifespan": "off",
        "access_log": True,
        "proxy_headers": False,
    }
    options.update(config)
    return EmbeddedServer(uvicorn.Config(app, host=host, port=port, **options))


def bound_port(server: uvicorn.Server) -> int:
    """The TCP port a started server listens on (useful with port 0)."""
    port: int = server.servers[0].sockets[0].getsockname()[1]
    return port
