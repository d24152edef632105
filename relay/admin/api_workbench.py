"""The reviewer's workbench in the JSON API: ``GET /api/audit`` and ``POST /api/quarantine/bulk``.

Same authentication, CSRF and cross-site rules as the rest of ``/api``
(:func:`relay.admin.api.authenticated`).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.admin.api import MAX_LIMIT, authenticated, error_response, iso_time, json_body
from relay.admin.bulk import (
    BULK_ACTIONS,
    BULK_DELETE,
    BULK_RELEASE_HIDDEN,
    MAX_BULK,
    BulkOutcome,
    count_outcomes,
    matching_ids,
    run_bulk,
    summarise,
)
from relay.admin.context import context_of
from relay.admin.filters import MESSAGE_FIELDS, audit_query, message_query
from relay.admin.review import MODE_HIDDEN
from relay.quarantine.store import AuditEntry

__all__ = ["MAX_OFFSET", "audit_json", "outcome_json", "workbench_api_routes"]

#: The largest ``offset`` (as ``GET /api/quarantine``): beyond, SQLite's integers overflow.
MAX_OFFSET = 10**9


def audit_json(entry: AuditEntry) -> dict[str, Any]:
    """One audit entry as JSON."""
    return {
        "id": entry.id,
        "at": iso_time(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "result": entry.result,
        "detail": entry.detail,
    }


def outcome_json(outcome: BulkOutcome) -> dict[str, Any]:
    """One message's bulk outcome as JSON."""
    return {"id": outcome.id, "result": outcome.result, "ok": outcome.ok, "message": outcome.text}


def _page_params(request: Request, default: int) -> tuple[int, int]:
    q = request.query_params
    limit_text, offset_text = q.get("limit", "") or str(default), q.get("offset", "") or "0"
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    if not offset_text.isdigit() or int(offset_text) > MAX_OFFSET:
        raise ValueError(f"offset must be a whole number from 0 to {MAX_OFFSET}")
    return int(limit_text), int(offset_text)


async def _audit(request: Request, actor: str) -> Response:
    try:
        query = audit_query(request.query_params, time.time())
        limit, offset = _page_params(request, 100)
    except ValueError as exc:
        return error_response(400, "bad_request", str(exc))
    page = await context_of(request).review.store.search_audit(query, limit=limit, offset=offset)
    return JSONResponse(
        {
            "items": [audit_json(e) for e in page.items],
            "total": page.total,
            "limit": page.limit,
            "offset": page.offset,
            "has_more": page.has_more,
        }
    )


def _bulk_action(body: dict[str, Any]) -> str:
    action, mode = body.get("action"), body.get("mode")
    if action == "release" and mode == MODE_HIDDEN:
        return BULK_RELEASE_HIDDEN
    if action == "release":
        raise ValueError('bulk release needs "mode": "hidden" (release as sent one at a time)')
    if action in BULK_ACTIONS:
        return str(action)
    raise ValueError('action must be "release" (with "mode": "hidden") or "delete"')


async def _ids(request: Request, body: dict[str, Any]) -> list[str]:
    ids, where = body.get("ids"), body.get("filter")
    if (ids is None) == (where is None):
        raise ValueError('give either "ids" (a list) or "filter" (an object), not both')
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError('"ids" must be a list of message ids')
        if len(ids) > MAX_BULK:
            raise ValueError(f"at most {MAX_BULK} ids per request")
        return ids
    if not isinstance(where, dict) or not all(isinstance(v, str) for v in where.values()):
        raise ValueError('"filter" must be an object of strings, e.g. {"rule": "bulk"}')
    unknown = sorted(set(where) - set(MESSAGE_FIELDS))
    if unknown:  # a typo must not widen the filter to every held message
        raise ValueError(f"unknown filter {', '.join(unknown)}: use {', '.join(MESSAGE_FIELDS)}")
    query = message_query(where, time.time())
    if not query.active():  # as the CLI: never the whole quarantine by accident
        raise ValueError('"filter" needs at least one filter besides status, e.g. {"rule": "R"}')
    return await matching_ids(context_of(request).review, query)


async def _bulk(request: Request, actor: str) -> Response:
    try:
        body = await json_body(request)
        action = _bulk_action(body)
        ids = await _ids(request, body)
    except ValueError as exc:  # JsonTooDeep / JsonNotUtf8 included
        return error_response(400, "bad_request", str(exc))
    ctx = context_of(request)
    outcomes = await run_bulk(ctx.review, ids, action, actor)
    count_outcomes(ctx.metrics, action, outcomes)
    return JSONResponse(
        {
            "action": "delete" if action == BULK_DELETE else "release",
            "mode": MODE_HIDDEN if action == BULK_RELEASE_HIDDEN else None,
            "messages": len(outcomes),
            "ok": all(o.ok for o in outcomes),
            "counts": summarise(outcomes),
            "results": [outcome_json(o) for o in outcomes],
        }
    )


def workbench_api_routes() -> list[Route]:
    """``GET /api/audit`` and ``POST /api/quarantine/bulk``."""
    return [
        Route("/api/audit", authenticated(_audit), methods=["GET"]),
        Route(
            "/api/quarantine/bulk",
            authenticated(_bulk, state_changing=True),
            methods=["POST"],
        ),
    ]
