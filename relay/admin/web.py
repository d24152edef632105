"""The HTML pages: login, logout and one message's detail (the list: web_workbench.py).

Plain forms, no JavaScript.  Every POST carries the session's CSRF token;
a missing or wrong token, or a post the browser says came from another site
(``Origin`` / ``Sec-Fetch-Site``, checked as for the API), gets 403.  After a
successful action the browser is redirected (POST-redirect-GET) with a
``notice`` key from a fixed set.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from relay.admin.context import AdminContext, client_ip, context_of, is_cross_site
from relay.admin.history import history_of, marked_recipients
from relay.admin.preview import explain_exposure, preview_message
from relay.admin.releasing import ReleaseDeferred
from relay.admin.review import MODE_AS_IS, MODE_HIDDEN, Viewed
from relay.admin.sessions import Session
from relay.errors import (
    CalendarAttendeesVisible,
    FourEyesError,
    QuarantineClaimedError,
    QuarantineNotFound,
    QuarantineStateError,
    UpstreamError,
)

__all__ = [
    "checked_post",
    "error_page",
    "field",
    "pending_requests",
    "render",
    "to_login",
    "web_routes",
]

NOTICES = {
    "released-as-is": "Released: the message was delivered as sent.",
    "released-hidden": "Released: the message was delivered with the external recipients hidden.",
    "released-refused": (
        "Released, but the upstream refused some recipients for good: "
        "they did not get the message (listed below)."
    ),
    "deleted": "Deleted: the message was removed from the quarantine.",
    "logged-out": "You are logged out.",
}


def _templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.ccguard_templates
    return templates


def _render(
    request: Request, name: str, session: Session | None, status: int = 200, **values: Any
) -> Response:
    notice = NOTICES.get(request.query_params.get("notice", ""))
    context = {"session": session, "notice": notice, **values}
    return _templates(request).TemplateResponse(request, name, context, status_code=status)


def _error_page(
    request: Request, session: Session | None, status: int, title: str, message: str
) -> Response:
    """The error page with ``title`` and ``message``, answered with ``status``."""
    return _render(request, "error.html", session, status, title=title, message=message)


def _refused(request: Request, session: Session | None, why: str) -> Response:
    """403 "Request refused": a form post ccguard will not act on, and why."""
    return _error_page(request, session, 403, "Request refused", why)


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)


def _safe_next(target: str | None) -> str:
    # Only local paths: never redirect a freshly logged-in admin to another site.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/overview"


async def _login_form(request: Request) -> Response:
    ctx = context_of(request)
    if await ctx.user_session(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    session = ctx.session(request) or Session.new(None, ctx.codec.now())
    response = _render(request, "login.html", session, next=request.query_params.get("next", ""))
    ctx.set_cookie(response, session)
    return response


def _login_again(
    request: Request, ctx: AdminContext, status: int, error: str, nxt: str, username: str = ""
) -> Response:
    """The login form again with ``error``; the user name typed stays filled in."""
    session = Session.new(None, ctx.codec.now())
    values = {"error": error, "next": nxt, "username": username}
    response = _render(request, "login.html", session, status, **values)
    ctx.set_cookie(response, session)
    return response


def _cross_site_refusal(request: Request, session: Session | None) -> Response | None:
    """The 403 page for a form post another site made the browser send, else None."""
    if not is_cross_site(request):
        return None
    context_of(request).count_refusal("cross_site")
    why = "This form was sent from another site. Open the admin page itself and retry."
    return _refused(request, session, why)


async def _login(request: Request) -> Response:
    ctx = context_of(request)
    refused = _cross_site_refusal(request, None)
    if refused is not None:
        return refused
    form = await request.form()
    nxt = str(form.get("next", ""))
    session = ctx.session(request)
    if session is None or not session.csrf_ok(_field(form, "csrf_token")):
        msg = "Your login form had expired. Please log in again."
        return _login_again(request, ctx, 403, msg, nxt)
    name, password = _field(form, "username") or "", _field(form, "password") or ""
    outcome, wait = await ctx.check_login(client_ip(request), name, password)
    if outcome == "throttled":
        msg = f"Too many failed logins. Try again in {int(wait) + 1} seconds."
        return _login_again(request, ctx, 429, msg, nxt, name)
    if outcome == "busy":
        msg = "The server is busy checking other logins. Try again in a moment."
        return _login_again(request, ctx, 503, msg, nxt, name)
    if outcome == "bad":
        return _login_again(request, ctx, 401, "Wrong user name or password.", nxt, name)
    await ctx.review.audit(name, "login", "-", "ok", f"ip={client_ip(request)}")
    response = RedirectResponse(_safe_next(nxt), status_code=303)
    ctx.set_cookie(response, ctx.new_user_session(name))  # new id: no fixation
    return response


def _field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


async def _checked_post(request: Request) -> tuple[Session, FormData] | Response:
    """The logged-in session and form of a same-site POST whose CSRF token matches,
    else the error."""
    ctx = context_of(request)
    session = await ctx.user_session(request)
    if session is None:
        return _to_login(request)
    refused = _cross_site_refusal(request, session)
    if refused is not None:
        return refused
    form = await request.form()
    if not session.csrf_ok(_field(form, "csrf_token")):
        why = "The form's security token was missing or wrong. Go back, reload and retry."
        return _refused(request, session, why)
    return session, form


async def _logout(request: Request) -> Response:
    checked = await _checked_post(request)
    if isinstance(checked, Response):
        return checked
    session, _ = checked
    ctx = context_of(request)
    await ctx.logout(session)
    response = RedirectResponse("/login?notice=logged-out", status_code=303)
    ctx.clear_cookie(response)
    return response


async def _pending_requests(request: Request) -> int:
    """How many release requests wait (relay/review/desk.py), shown to reviewers first."""
    desk = getattr(request.app.state, "ccguard_desk", None)
    if desk is None:
        return 0
    return len(await desk.store.list_requests(status="pending", limit=200))


async def _home(request: Request) -> Response:
    # Reviewers land on what waits for them: release requests first, else the overview.
    target = "/requests" if await _pending_requests(request) else "/overview"
    return RedirectResponse(target, status_code=303)


async def _detail_page(
    request: Request,
    session: Session,
    viewed: Viewed,
    *,
    status: int = 200,
    error: str | None = None,
) -> Response:
    stored = viewed.message
    review = context_of(request).review
    progress = await review.progress(stored.id)
    history = await history_of(review.store, stored)
    return _render(
        request,
        "detail.html",
        session,
        status,
        msg=stored,
        preview=viewed.preview,
        explanation=explain_exposure(stored.exposure, stored.rule, stored.reason),
        error=error,
        progress=progress,
        history=history,
        recipients=marked_recipients(request, stored.rcpt_tos),
        mode_as_is=MODE_AS_IS,
        mode_hidden=MODE_HIDDEN,
    )


def _not_found(request: Request, session: Session) -> Response:
    return _error_page(
        request,
        session,
        404,
        "No such message",
        "There is no quarantined message with this id (it may have been purged).",
    )


async def _detail(request: Request) -> Response:
    ctx = context_of(request)
    session = await ctx.user_session(request)
    if session is None:
        return _to_login(request)
    try:
        viewed = await ctx.review.view(request.path_params["id"], str(session.user))
    except QuarantineNotFound:
        return _not_found(request, session)
    return await _detail_page(request, session, viewed)


async def _act(request: Request) -> Response:
    checked = await _checked_post(request)
    if isinstance(checked, Response):
        return checked
    session, form = checked
    message_id = request.path_params["id"]
    try:
        return await _perform(request, session, message_id, _field(form, "mode") or "")
    except QuarantineNotFound:
        return _not_found(request, session)
    except (
        QuarantineStateError, ReleaseDeferred, UpstreamError, CalendarAttendeesVisible,
        FourEyesError,
    ) as exc:  # fmt: skip
        status, error = _action_failure(exc)
        return await _detail_after_error(request, session, message_id, status, error)


async def _perform(request: Request, session: Session, message_id: str, mode: str) -> Response:
    """Release or delete the message; raises what the review layer raises."""
    review, actor = context_of(request).review, str(session.user)
    action = request.path_params["action"]
    if action == "release" and mode in (MODE_AS_IS, MODE_HIDDEN):
        report = await review.release(message_id, mode, actor)
        notice = "released-refused" if report.refused else f"released-{mode}"
        return RedirectResponse(f"/quarantine/{message_id}?notice={notice}", status_code=303)
    if action == "delete":
        await review.delete(message_id, actor)
        return RedirectResponse("/quarantine?notice=deleted", status_code=303)
    return _error_page(request, session, 400, "Bad request", "Unknown action or release mode.")


def _action_failure(exc: Exception) -> tuple[int, str]:
    """The HTTP status and the detail page's error text for a failed action."""
    if isinstance(exc, QuarantineClaimedError):
        return 409, f"Nothing was done: this message is being released by {exc.claimed_by}."
    if isinstance(exc, QuarantineStateError):
        return 409, f"Nothing was done: this message is already {exc.status}."
    if isinstance(exc, CalendarAttendeesVisible):
        return 409, (
            "Nothing was done: this is a calendar invitation and hiding the recipients "
            "cannot hide its attendee list"
            + (f" ({exc.external} external attendees)" if exc.external else "")
            + ". Every recipient would still see every attendee. Release it as sent only "
            "if that is acceptable, or delete it."
        )
    if isinstance(exc, FourEyesError):
        return 403, f"Nothing was done: {exc.why}."
    if isinstance(exc, ReleaseDeferred):
        return 502, _capitalised(exc.report.still_held_text()) + "."
    assert isinstance(exc, UpstreamError)
    return 502, (
        "The upstream mail server did not accept the message "
        f"({exc.reply.code} {exc.reply.status}). It is still held; try again later."
    )


def _capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


async def _detail_after_error(
    request: Request, session: Session, message_id: str, status: int, error: str
) -> Response:
    stored = await context_of(request).review.store.get(message_id)
    if stored is None:
        return _not_found(request, session)
    preview = await asyncio.to_thread(preview_message, stored.message) if stored.message else None
    viewed = Viewed(stored, preview)
    return await _detail_page(request, session, viewed, status=status, error=error)


def web_routes() -> list[Route]:
    """The HTML routes."""
    return [
        Route("/", _home, methods=["GET"]),
        Route("/login", _login_form, methods=["GET"]),
        Route("/login", _login, methods=["POST"]),
        Route("/logout", _logout, methods=["POST"]),
        Route("/quarantine/{id}", _detail, methods=["GET"]),
        Route("/quarantine/{id}/{action:str}", _act, methods=["POST"]),
    ]


# For the workbench pages (relay/admin/web_workbench.py): the same page, login and POST checks.
render = _render
error_page = _error_page
to_login = _to_login
checked_post = _checked_post
field = _field
pending_requests = _pending_requests
