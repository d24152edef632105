"""The reviewer's workbench pages: search the quarantine, the audit page and the favicon.

Plain GET forms, no JavaScript; filters are carried in the query string so a
search can be bookmarked and a reload shows the same page.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from relay.admin.context import context_of
from relay.admin.filters import MESSAGE_FIELDS, audit_query, describe_filter, message_query
from relay.admin.web import pending_requests, render, to_login
from relay.quarantine.search import AuditQuery, MessageQuery
from relay.quarantine.store import STATUSES, QuarantineStore

__all__ = ["explain_no_match", "workbench_web_routes"]

PAGE_SIZE = 50
AUDIT_PAGE_SIZE = 50
MAX_PAGE = 10**6
KNOWN_ACTIONS = (
    "login", "logout", "view", "release", "delete", "bulk", "purge", "request", "approve", "deny",
    "report",
)  # fmt: skip
_FAVICON = Path(__file__).parent / "static" / "favicon.svg"


def _page_no(request: Request) -> int:
    text = request.query_params.get("page", "")
    # Capped: a page number past the store's integers would be a 500, not an empty page.
    return min(int(text), MAX_PAGE) if text.isdigit() and int(text) > 0 else 1


async def _count(store: QuarantineStore, query: MessageQuery) -> int:
    return (await store.search(query, limit=1)).total


async def explain_no_match(
    store: QuarantineStore, query: MessageQuery, params: Mapping[str, str]
) -> str:
    """Why a search found nothing, naming the filter that excluded everything."""
    base = MessageQuery(status=query.status)
    what = f"{query.status} " if query.status else ""
    if await _count(store, base) == 0:
        return f"There are no {what}messages at all." if what else "The quarantine is empty."
    active = query.active()
    alone = {
        n: await _count(store, dataclasses.replace(base, **{n: getattr(query, n)})) for n in active
    }
    empty = [describe_filter(n, params) for n in active if alone[n] == 0]
    if empty:
        return f"No {what}message has {' or '.join(empty)}: that filter excludes everything."
    for name in active:
        without = await _count(store, dataclasses.replace(query, **{name: None}))
        if without:
            return (
                f"Each filter matches some {what}messages, but not together: without "
                f"{describe_filter(name, params)} {without} would match."
            )
    return f"Each filter matches some {what}messages, but no message matches them all."


async def _list(request: Request) -> Response:
    ctx = context_of(request)
    session = await ctx.user_session(request)
    if session is None:
        return to_login(request)
    params = {name: request.query_params.get(name, "").strip() for name in MESSAGE_FIELDS}
    params["status"] = params["status"] or "held"
    page_no, error, status = _page_no(request), None, 200
    try:
        query = message_query(params, time.time())
    except ValueError as exc:
        query, error, status = MessageQuery(status="held"), str(exc), 400
    store = ctx.review.store
    page = await store.search(query, limit=PAGE_SIZE, offset=(page_no - 1) * PAGE_SIZE)
    no_match = await explain_no_match(store, query, params) if not page.total and not error else ""
    kept = {k: v for k, v in params.items() if v}
    pages = max(1, math.ceil(page.total / PAGE_SIZE))
    return render(
        request, "list.html", session, status,
        page=page, page_no=page_no, pages=pages, last_query=urlencode({**kept, "page": pages}),
        filters=params, statuses=(*STATUSES, "all"), error=error, no_match=no_match,
        pending_requests=await pending_requests(request),
        prev_query=urlencode({**kept, "page": page_no - 1}),
        next_query=urlencode({**kept, "page": page_no + 1}),
    )  # fmt: skip


async def _audit_page(request: Request) -> Response:
    ctx = context_of(request)
    session = await ctx.user_session(request)
    if session is None:
        return to_login(request)
    names = ("user", "action", "target", "since", "until")
    params = {n: request.query_params.get(n, "").strip() for n in names}
    page_no, error, status = _page_no(request), None, 200
    try:
        query = audit_query(params, time.time())
    except ValueError as exc:
        query, error, status = AuditQuery(), str(exc), 400
    offset = (page_no - 1) * AUDIT_PAGE_SIZE
    page = await ctx.review.store.search_audit(query, limit=AUDIT_PAGE_SIZE, offset=offset)
    kept = {k: v for k, v in params.items() if v}
    pages = max(1, math.ceil(page.total / AUDIT_PAGE_SIZE))
    return render(
        request, "audit.html", session, status,
        page=page, page_no=page_no, pages=pages, last_query=urlencode({**kept, "page": pages}),
        filters=params, error=error, known_actions=KNOWN_ACTIONS,
        prev_query=urlencode({**kept, "page": page_no - 1}),
        next_query=urlencode({**kept, "page": page_no + 1}),
    )  # fmt: skip


async def _favicon(request: Request) -> Response:
    return FileResponse(_FAVICON, media_type="image/svg+xml")


def workbench_web_routes() -> list[Route]:
    """The search list, the audit page and the favicon."""
    return [
        Route("/quarantine", _list, methods=["GET"]),
        Route("/audit", _audit_page, methods=["GET"]),
        Route("/favicon.ico", _favicon, methods=["GET"]),
    ]
