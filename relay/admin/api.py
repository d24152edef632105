"""The JSON API under ``/api``: list, detail, release and delete held messages.

Authenticated with HTTP Basic (no CSRF token needed) or with the web UI's
session cookie (then state-changing calls need the ``X-CSRF-Token`` header).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.admin.bodies import JsonTooDeep, loads_bounded
from relay.admin.context import (
    AdminContext,
    basic_credentials,
    client_ip,
    context_of,
    is_cross_site,
)
from relay.admin.filters import exact_sender, message_query
from relay.admin.releasing import ReleaseDeferred, ReleaseReport
from relay.admin.review import PUBLIC_MODES, Viewed, public_mode
from relay.codes import Reply
from relay.errors import (
    CalendarAttendeesVisible,
    FourEyesError,
    QuarantineClaimedError,
    QuarantineNotFound,
    QuarantineStateError,
    StoreError,
    UpstreamError,
)
from relay.quarantine.store import MessageSummary

__all__ = [
    "api_routes",
    "authenticated",
    "error_response",
    "iso_time",
    "json_body",
    "summary_json",
]

MAX_LIMIT = 500
Handler = Callable[[Request, str], Awaitable[Response]]


def iso_time(epoch: float | None) -> str | None:
    """ISO 8601 UTC text for an epoch time (None stays None)."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def summary_json(item: MessageSummary) -> dict[str, Any]:
    """A message summary as JSON (no recipients, no bytes); ``release_mode`` is
    the public name (``as-is`` / ``hidden``), as a release request gives it."""
    return {
        "id": item.id,
        "received_at": iso_time(item.received_at),
        "status": item.status,
        "mail_from": item.mail_from,
        "auth_user": item.auth_user,
        "subject": item.subject,
        "size": item.size,
        "recipients": len(item.rcpt_tos),
        "action": item.action,
        "rule": item.rule,
        "reason": item.reason,
        "exposure": dict(item.exposure),
        "released_at": iso_time(item.released_at),
        "released_by": item.released_by,
        "release_mode": public_mode(item.release_mode),
        "deleted_at": iso_time(item.deleted_at),
        "deleted_by": item.deleted_by,
    }


def _detail_json(viewed: Viewed) -> dict[str, Any]:
    stored, preview = viewed.message, viewed.preview
    data = summary_json(stored)
    data["rcpt_tos"] = list(stored.rcpt_tos)
    if preview is not None:
        data["headers"] = [[name, value] for name, value in preview.headers]
        data["text_preview"] = preview.text
        data["text_truncated"] = preview.truncated
        data["parts"] = [
            {"content_type": p.content_type, "filename": p.filename, "size": p.size}
            for p in preview.parts
        ]
        data["notes"] = list(preview.notes)
    return data


def _error(http_status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    challenge = 'Basic realm="ccguard", charset="UTF-8"'
    headers = {"WWW-Authenticate": challenge} if http_status == 401 else {}
    body = {"error": code, "message": message, **extra}
    return JSONResponse(body, status_code=http_status, headers=headers)


async def _actor(request: Request, ctx: AdminContext, *, state_changing: bool) -> Response | str:
    """The authenticated user name, or the error response to send instead."""
    creds = basic_credentials(request)
    if creds is not None:
        outcome, wait = await ctx.check_login(client_ip(request), *creds)
        if outcome == "ok":
            return creds[0]
        if outcome == "throttled":
            resp = _error(429, "too_many_attempts", "too many failed logins, try again later")
            resp.headers["Retry-After"] = str(int(wait) + 1)
            return resp
        if outcome == "busy":
            resp = _error(503, "busy", "too many logins are being checked, try again shortly")
            resp.headers["Retry-After"] = str(int(wait))
            return resp
        return _error(401, "unauthorized", "wrong user name or password")
    session = await ctx.user_session(request)
    if session is None or session.user is None:
        return _error(401, "unauthorized", "authentication required (HTTP Basic)")
    if state_changing and not session.csrf_ok(request.headers.get("x-csrf-token")):
        return _error(403, "csrf", "missing or wrong X-CSRF-Token header")
    return session.user


def _refused_as_cross_site(request: Request) -> Response | None:
    """The error for a state-changing request a browser may have sent for another site.

    Browsers send cached Basic credentials (and cookies) with cross-site form
    posts; such a post can only be ``form-urlencoded``, ``multipart`` or
    ``text/plain``, so requiring ``application/json`` stops it, and
    :func:`is_cross_site` refuses it outright where browsers say so.
    """
    if is_cross_site(request):
        context_of(request).count_refusal("cross_site")
        return _error(403, "cross_site", "cross-site requests may not change anything")
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/json":
        return _error(415, "unsupported_media_type", "send the body as application/json")
    return None


def _authenticated(
    handler: Handler, *, state_changing: bool = False
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        ctx = context_of(request)
        refused = _refused_as_cross_site(request) if state_changing else None
        if refused is not None:
            return refused
        actor = await _actor(request, ctx, state_changing=state_changing)
        if isinstance(actor, Response):
            return actor
        try:
            return await handler(request, actor)
        except QuarantineNotFound:
            return _error(404, "not_found", "no quarantined message with this id")
        except FourEyesError as exc:
            return _error(403, exc.code, exc.why, request_id=exc.request_id)
        except QuarantineClaimedError as exc:
            return _error(
                409, "conflict", f"message is being released by {exc.claimed_by}",
                status="held", claimed_by=exc.claimed_by,
            )  # fmt: skip
        except QuarantineStateError as exc:
            return _error(409, "conflict", f"message is already {exc.status}", status=exc.status)
        except StoreError:
            return _error(503, "store_unavailable", "the quarantine store is unavailable")

    return endpoint


def _int_param(request: Request, name: str, default: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or int(text) > high:
        raise ValueError(f"{name} must be a whole number from 0 to {high}")
    return int(text)


async def _list(request: Request, actor: str) -> Response:
    """The web search's filters (``sender``, ``subject``, ``rcpt_domain``, ``rule``,
    ``since``, ``until``, ``status``); a full address as ``sender`` matches exactly."""
    try:
        limit = _int_param(request, "limit", 50, MAX_LIMIT)
        offset = _int_param(request, "offset", 0, 10**9)
        query = exact_sender(message_query(request.query_params, time.time()))
    except ValueError as exc:
        return _error(400, "bad_request", str(exc))
    page = await context_of(request).review.store.search(query, limit=limit or 1, offset=offset)
    return JSONResponse(
        {
            "items": [summary_json(item) for item in page.items],
            "total": page.total,
            "limit": page.limit,
            "offset": page.offset,
            "has_more": page.has_more,
        }
    )


async def _detail(request: Request, actor: str) -> Response:
    viewed = await context_of(request).review.view(request.path_params["id"], actor)
    return JSONResponse(_detail_json(viewed))


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()  # at most [admin] max_request_bytes: see BodyLimit
    if not raw.strip():
        return {}
    data = loads_bounded(raw)
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


async def _release(request: Request, actor: str) -> Response:
    try:
        mode = (await _json_body(request)).get("mode")
    except JsonTooDeep as exc:
        context_of(request).count_refusal("too_deep")
        return _error(400, "too_deep", str(exc))
    except ValueError:  # JsonNotUtf8 included: UTF-16/32 is refused, never parsed
        return _error(400, "bad_request", 'the body must be UTF-8 JSON like {"mode": "hidden"}')
    if mode is None:
        return _error(400, "bad_mode", f"mode is required: one of {', '.join(PUBLIC_MODES)}")
    if mode not in PUBLIC_MODES:
        return _error(400, "bad_mode", f"mode must be one of {', '.join(PUBLIC_MODES)}")
    message_id = request.path_params["id"]
    try:
        report = await context_of(request).review.release(message_id, mode, actor)
    except ReleaseDeferred as exc:
        return _error(
            502, "recipients_deferred", exc.report.still_held_text(), **_progress_json(exc.report)
        )
    except CalendarAttendeesVisible as exc:
        return _error(
            409, exc.code, str(exc), status="held",
            attendees_external=exc.external, calendar_truncated=exc.truncated,
        )  # fmt: skip
    except UpstreamError as exc:
        return _error(
            502,
            "upstream_failed",
            "the upstream server did not accept the message; it is still held",
            upstream_reply=str(exc.reply),
            kind=exc.kind,
        )
    body = summary_json(report.message)
    body["upstream_reply"] = str(report.reply) if report.reply else None
    body.update(_progress_json(report))
    return JSONResponse(body)


def _recipient_replies(replies: Mapping[str, Reply | None]) -> list[dict[str, str | None]]:
    return [{"rcpt": r, "reply": str(reply) if reply else None} for r, reply in replies.items()]


def _progress_json(report: ReleaseReport) -> dict[str, Any]:
    """Per-recipient outcome of a release (shown only to authenticated admins)."""
    return {
        "delivered": report.delivered,
        "recipients": report.total,
        "deferred": _recipient_replies(report.deferred),
        "refused": _recipient_replies(report.refused),
    }


async def _delete(request: Request, actor: str) -> Response:
    message_id = request.path_params["id"]
    await context_of(request).review.delete(message_id, actor)
    return JSONResponse({"id": message_id, "status": "deleted"})


def api_routes() -> list[Route]:
    """The ``/api/quarantine`` routes."""
    return [
        Route("/api/quarantine", _authenticated(_list), methods=["GET"]),
        Route("/api/quarantine/{id}", _authenticated(_detail), methods=["GET"]),
        Route(
            "/api/quarantine/{id}/release",
            _authenticated(_release, state_changing=True),
            methods=["POST"],
        ),
        Route(
            "/api/quarantine/{id}/delete",
            _authenticated(_delete, state_changing=True),
            methods=["POST"],
        ),
    ]


# For the workbench routes (relay/admin/api_workbench.py): the same checks and error shape.
authenticated = _authenticated
error_response = _error
json_body = _json_body
