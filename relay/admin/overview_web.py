"""The overview page (``/overview``, where ``/`` and a login land) and its report downloads.

``GET /overview?from=2026-11-01&to=2026-11-30`` (or ``?days=30``; default the
last 30 UTC days up to today) shows the figures and charts; ``GET
/overview/report.{pdf,html,json}`` with the same period downloads the evidence
report (keyed-hash senders only: the in-clear edition is the CLI's alone).
Every download is audited (action ``report``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from relay.admin.charts import build_charts
from relay.admin.context import context_of
from relay.admin.figures import Period, compute_figures
from relay.admin.report import Report, ReportSource, gather, parse_day, report_json
from relay.admin.report_render import duration, render_html, render_pdf
from relay.errors import ReportError
from relay.observability.redact import Redactor
from relay.settings import PolicySettings

__all__ = ["DEFAULT_DAYS", "MAX_DAYS", "overview_routes", "report_source_of"]

DEFAULT_DAYS = 30
MAX_DAYS = 366
_TYPES = {
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}


def report_source_of(request: Request) -> ReportSource:
    """The app's policy and hash key for reports (a default policy and a random key if none)."""
    source: ReportSource | None = getattr(request.app.state, "ccguard_report", None)
    if source is None:
        source = ReportSource(
            PolicySettings(), (), Redactor(secrets.token_bytes(32), ephemeral=True)
        )
        request.app.state.ccguard_report = source
    return source


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)


def _today() -> date:
    return datetime.now(UTC).date()


def period_from(request: Request) -> Period:
    """The period the query asks for; raises ValueError with a message for the page."""
    q, today = request.query_params, _today()
    if q.get("from") or q.get("to"):
        first = parse_day(q.get("from") or q.get("to", ""))
        last = parse_day(q.get("to") or q.get("from", ""))
    else:
        days = int(q["days"]) if q.get("days", "").isdigit() else DEFAULT_DAYS
        days = min(max(days, 1), MAX_DAYS)
        first, last = today - timedelta(days=days - 1), today
    period = Period(first, last)
    if period.days > MAX_DAYS:
        raise ValueError(f"choose a period of at most {MAX_DAYS} days")
    return period


def _default_period() -> Period:
    today = _today()
    return Period(today - timedelta(days=DEFAULT_DAYS - 1), today)


async def _overview(request: Request) -> Response:
    ctx = context_of(request)
    session = await ctx.user_session(request)
    if session is None:
        return _to_login(request)
    error = None
    try:
        period = period_from(request)
    except ValueError as exc:
        period, error = _default_period(), f"{exc}; showing the last {DEFAULT_DAYS} days."
    store, now = ctx.review.store, time.time()
    # Figures in a worker thread: the event loop also serves SMTP (seconds for a big period).
    rows = await store.period_rows(period.start, period.end)
    figures = await asyncio.to_thread(compute_figures, rows, period)
    today = Period(_today(), _today())
    rows = await store.period_rows(today.start, today.end)
    decided_today = await asyncio.to_thread(compute_figures, rows, today)
    stats = await store.stats()
    templates: Jinja2Templates = request.app.state.ccguard_templates
    oldest = None if stats.oldest_held_at is None else now - stats.oldest_held_at
    values = {
        "session": session,
        "notice": None,
        "f": figures,
        "charts": build_charts(figures),
        "stats": stats,
        "decided_today": decided_today.decisions.count,
        "oldest_age": duration(oldest) if oldest is not None else "—",
        "error": error,
    }
    return templates.TemplateResponse(request, "overview.html", values, status_code=200)


async def _report(request: Request) -> Response:
    ctx = context_of(request)
    session = await ctx.user_session(request)
    if session is None:
        return _to_login(request)
    fmt = request.path_params["fmt"]
    if fmt not in _TYPES:
        return HTMLResponse("Unknown report format: use pdf, html or json.", status_code=404)
    try:
        period = period_from(request)
    except ValueError as exc:
        return HTMLResponse(f"Bad period: {exc}.", status_code=400)
    report = await gather(ctx.review.store, period, report_source_of(request))
    try:
        body = await asyncio.to_thread(_render, report, fmt)
    except ReportError as exc:
        return HTMLResponse(str(exc), status_code=503)
    detail = f"format={fmt} from={period.first} to={period.last}"
    await ctx.review.audit(str(session.user), "report", "-", "ok", detail)
    if ctx.metrics is not None:
        ctx.metrics.report_made(fmt)
    name = f"ccguard-report-{period.first}-{period.last}.{fmt}"
    headers = {"content-disposition": f'attachment; filename="{name}"'}
    return Response(body, media_type=_TYPES[fmt], headers=headers)


def _render(report: Report, fmt: str) -> bytes:
    if fmt == "json":
        return json.dumps(report_json(report), indent=2).encode()
    if fmt == "html":
        return render_html(report).encode()
    return render_pdf(report)


def overview_routes() -> list[Route]:
    """The overview page and the report downloads."""
    return [
        Route("/overview", _overview, methods=["GET"]),
        Route("/overview/report.{fmt:str}", _report, methods=["GET"]),
    ]
