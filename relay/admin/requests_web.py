"""Release requests for reviewers: the "Release requests" page and its JSON API.

``/requests`` lists pending requests first (with the justification, who asked,
who approved so far) and the latest decisions; approve or deny with a
comment.  ``POST /quarantine/{id}/request`` lets a reviewer ask for a release
as sent (for a ``four_eyes`` message, the only way).  The API mirrors it:
``GET /api/requests``, ``POST /api/requests/{id}/approve|deny`` and
``POST /api/quarantine/{id}/request``; a four-eyes refusal is 403
``{"error": "four_eyes"}``.  The desk (relay/review/desk.py) does the work and
the auditing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from relay.admin.api import _authenticated, _error, _json_body, iso_time
from relay.admin.context import context_of
from relay.admin.releasing import ReleaseDeferred
from relay.admin.web import _checked_post, _error_page, _field, _render, _to_login
from relay.errors import (
    FourEyesError,
    QuarantineStateError,
    RequestNotFound,
    RequestStateError,
    UpstreamError,
)
from relay.quarantine.requests import PENDING, ReleaseRequest

if TYPE_CHECKING:
    from relay.review.desk import RequestDesk

__all__ = ["request_json", "requests_routes"]

_NOTICES = {
    "approved": "Approved. The message was delivered as sent.",
    "approval-recorded": "Your approval is recorded; the rule needs another reviewer's too.",
    "denied": "Denied. The sender was told.",
    "requested": "Release request made; another reviewer must approve it.",
}


_NOT_DELIVERED = (
    "The request is approved, but the upstream did not take the message; it is still held. "
    "Release it as sent from its page once the upstream is back."
)


def _desk(request: Request) -> RequestDesk:
    desk: RequestDesk = request.app.state.ccguard_desk
    return desk


def request_json(item: ReleaseRequest) -> dict[str, Any]:
    """A release request as JSON, with who approved when."""
    return {
        "id": item.id, "message_id": item.message_id, "requester": item.requester,
        "justification": item.justification, "created_at": iso_time(item.created_at),
        "status": item.status, "approvals_needed": item.approvals_needed,
        "approvals": [
            {"reviewer": a.reviewer, "at": iso_time(a.at), "comment": a.comment}
            for a in item.approvals
        ],
        "decided_at": iso_time(item.decided_at), "decided_by": item.decided_by,
        "comment": item.comment,
    }  # fmt: skip


async def _page(request: Request) -> Response:
    session = await context_of(request).user_session(request)
    if session is None:
        return _to_login(request)
    store = _desk(request).store
    pending = await store.list_requests(status=PENDING, limit=200)
    decided = [r for r in await store.list_requests(limit=50) if r.status != PENDING]
    subjects = {}
    for item in (*pending, *decided):
        stored = await store.get(item.message_id)
        subjects[item.message_id] = (stored.subject or "(no subject)") if stored else "(purged)"
    notice = _NOTICES.get(request.query_params.get("done", ""))
    return _render(
        request, "requests.html", session, pending=list(reversed(pending)), decided=decided,
        subjects=subjects, done=notice, error=None,
    )  # fmt: skip


async def _decide(request: Request) -> Response:
    checked = await _checked_post(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    request_id, action = request.path_params["id"], request.path_params["action"]
    comment = _field(form, "comment") or ""
    desk, actor = _desk(request), str(session.user)
    try:
        if action == "approve":
            decided, _ = await desk.approve(request_id, actor, comment)
            done = "approved" if decided.status != PENDING else "approval-recorded"
        elif action == "deny":
            await desk.deny(request_id, actor, comment)
            done = "denied"
        else:
            return _error_page(request, session, 400, "Bad request", "Unknown action.")
    except FourEyesError as exc:
        return _error_page(request, session, 403, "Four eyes", f"Nothing was done: {exc.why}.")
    except (RequestNotFound, RequestStateError, QuarantineStateError) as exc:
        return _error_page(request, session, 409, "Nothing was done", str(exc))
    except (UpstreamError, ReleaseDeferred):
        return _error_page(request, session, 502, "Approved, not delivered", _NOT_DELIVERED)
    return RedirectResponse(f"/requests?done={done}", status_code=303)


async def _make(request: Request) -> Response:
    checked = await _checked_post(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    why = (_field(form, "justification") or "").strip()
    message_id = request.path_params["id"]
    if not why:
        return _error_page(request, session, 400, "Bad request", "A justification is required.")
    try:
        await _desk(request).make(message_id, str(session.user), why)
    except RequestStateError as exc:
        return _error_page(request, session, 409, "Nothing was done", str(exc))
    return RedirectResponse("/requests?done=requested", status_code=303)


async def _api_list(request: Request, actor: str) -> Response:
    status = request.query_params.get("status") or None
    items = await _desk(request).store.list_requests(status=status, limit=500)
    return JSONResponse({"items": [request_json(i) for i in items]})


async def _api_decide(request: Request, actor: str) -> Response:
    try:
        comment = str((await _json_body(request)).get("comment", ""))
    except ValueError:
        return _error(400, "bad_request", 'the body must be JSON like {"comment": "..."}')
    desk, request_id, action = (
        _desk(request),
        request.path_params["id"],
        request.path_params["action"],
    )
    if action not in ("approve", "deny"):
        return _error(404, "not_found", "use /approve or /deny")
    try:
        if action == "approve":
            decided, report = await desk.approve(request_id, actor, comment)
        else:
            decided, report = await desk.deny(request_id, actor, comment), None
    except RequestNotFound:
        return _error(404, "not_found", "no release request with this id")
    except RequestStateError as exc:
        return _error(409, "conflict", str(exc), status=exc.status)
    except (UpstreamError, ReleaseDeferred) as exc:
        return _error(502, "upstream_failed", _NOT_DELIVERED, detail=str(exc))
    body = request_json(decided)
    body["delivered"] = report.delivered if report is not None else None
    return JSONResponse(body)


async def _api_make(request: Request, actor: str) -> Response:
    try:
        why = str((await _json_body(request)).get("justification", "")).strip()
    except ValueError:
        return _error(400, "bad_request", 'the body must be JSON like {"justification": "..."}')
    if not why:
        return _error(400, "bad_request", "justification is required")
    try:
        made = await _desk(request).make(request.path_params["id"], actor, why)
    except RequestStateError as exc:
        return _error(409, "conflict", str(exc), status=exc.status)
    return JSONResponse(request_json(made), status_code=201)


def requests_routes() -> list[Route]:
    """The release-request pages and API routes."""
    return [
        Route("/requests", _page, methods=["GET"]),
        Route("/requests/{id}/{action:str}", _decide, methods=["POST"]),
        Route("/quarantine/{id}/request", _make, methods=["POST"]),
        Route("/api/requests", _authenticated(_api_list), methods=["GET"]),
        Route(
            "/api/requests/{id}/{action:str}",
            _authenticated(_api_decide, state_changing=True),
            methods=["POST"],
        ),
        Route(
            "/api/quarantine/{id}/request",
            _authenticated(_api_make, state_changing=True),
            methods=["POST"],
        ),
    ]
