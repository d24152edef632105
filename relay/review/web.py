"""The sender's page: ``GET /r/<token>`` shows the held message, ``POST /r/<token>`` decides.

No login, no cookie, no JavaScript: the signed token in the address is the
only credential and grants this one page.  A post the browser says came from
another site is refused (as in the admin UI).  After a decision the page is
shown again with what happened; the link is then used up.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from relay.admin.context import forwarded_client_ip, is_cross_site
from relay.admin.preview import explain_exposure
from relay.errors import CalendarAttendeesVisible, FourEyesError, QuarantineStateError
from relay.quarantine.store import StoredMessage
from relay.review.service import DecisionFailed, SelfService, SenderDone, Throttled
from relay.review.tokens import TokenRefused

__all__ = ["sender_routes", "static_mount"]

HERE = Path(__file__).parent
_ADMIN = HERE.parent / "admin"
_DONE = {
    "hidden": "Sent: every recipient got your message with the external addresses hidden.",
    "split": "Sent: each recipient got their own copy.",
    "send_now": "Sent now, as you wrote it.",
    "withdraw": "Withdrawn: nobody got your message and it was removed.",
    "request": "Your request was sent to the reviewers. You will get a mail with their decision.",
}
_STATUS = {"held": "held", "released": "delivered", "deleted": "withdrawn / deleted"}
_REFUSED = {
    "expired": (410, "This link has expired", "Links in notices work for a limited time."),
    "used": (410, "This link was already used", "Each link works for one decision."),
}
_INVALID = (403, "This link is not valid", "The link is damaged or was not made by ccguard.")


def _datetime(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=[str(HERE / "templates"), str(_ADMIN / "templates")])
    templates.env.autoescape = True
    templates.env.filters["datetime"] = _datetime
    return templates


def static_mount() -> Mount:
    """The shared stylesheet, for a ``[review] listen`` server of its own."""
    return Mount("/static", app=StaticFiles(directory=str(_ADMIN / "static")), name="static")


def _explain(msg: StoredMessage) -> list[str]:
    """Why it was held, in the admin page's words, minus the reviewers' release advice."""
    lines = explain_exposure(msg.exposure, msg.rule, msg.reason)
    return [line for line in lines if not line.startswith("Release ")]


def sender_routes(service: SelfService, trusted_proxies: Sequence[str] = ()) -> list[BaseRoute]:
    """The sender page's routes, bound to ``service``; clients behind one of
    ``trusted_proxies`` are known (throttled, audited) by their X-Forwarded-For."""
    templates = _templates()

    def _peer(request: Request) -> str:
        return forwarded_client_ip(request, trusted_proxies)

    def error(request: Request, status: int, title: str, message: str) -> Response:
        values = {"title": title, "message": message}
        return templates.TemplateResponse(request, "sender_error.html", values, status_code=status)

    def refusal(request: Request, exc: TokenRefused | Throttled) -> Response:
        if isinstance(exc, Throttled):
            text = (
                f"Too many bad links from your address. Try again in {int(exc.wait) + 1} seconds."
            )
            return error(request, 429, "Please wait", text)
        return error(request, *_REFUSED.get(exc.reason, _INVALID))

    async def page(request: Request, token: str, status: int = 200, **extra: Any) -> Response:
        try:
            view = await service.open(token, _peer(request))
        except (TokenRefused, Throttled) as exc:
            return refusal(request, exc)
        msg = view.message
        rule = service.rules.get(msg.rule or "")
        values = {
            "msg": msg,
            "token": token,
            "choices": view.choices,
            "delay": view.delay,
            "pending": view.request,
            "status_text": _STATUS.get(msg.status, msg.status),
            "explanation": _explain(msg),
            "four_eyes": bool(rule and rule.four_eyes),
            **extra,
        }
        return templates.TemplateResponse(request, "sender.html", values, status_code=status)

    async def show(request: Request) -> Response:
        return await page(request, request.path_params["token"])

    async def decide(request: Request) -> Response:
        token = request.path_params["token"]
        if is_cross_site(request):
            return error(request, 403, "Request refused", "This form was sent from another site.")
        form = await request.form()
        choice, why = str(form.get("choice", "")), str(form.get("justification", ""))
        try:
            done = await service.act(token, choice, why, _peer(request))
        except (TokenRefused, Throttled) as exc:
            return refusal(request, exc)
        except ValueError as exc:
            return await page(request, token, 400, error=str(exc).capitalize() + ".")
        except DecisionFailed as exc:
            status, text = _failure_text(exc.cause)
            return await page(request, exc.token, status, error=text)
        return _done(request, templates, service, done)

    return [
        Route("/r/{token}", show, methods=["GET"]),
        Route("/r/{token}", decide, methods=["POST"]),
    ]


def _failure_text(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, QuarantineStateError):
        return 409, "Nothing was done: a reviewer has already dealt with this message."
    if isinstance(exc, CalendarAttendeesVisible):
        return 409, (
            "Nothing was done: this is a calendar invitation and hiding the recipients cannot "
            "hide its attendee list. Ask for it to be sent as written, or withdraw it."
        )
    if isinstance(exc, FourEyesError):
        return (
            403,
            "Nothing was done: this message can only go as written with reviewers' approval.",
        )
    return 502, "Nothing could be delivered right now; your message is still held. Try again."


def _done(
    request: Request, templates: Jinja2Templates, service: SelfService, done: SenderDone
) -> Response:
    msg = done.message
    values = {
        "msg": msg,
        "token": "",
        "choices": (),
        "delay": None,
        "pending": done.request,
        "status_text": _STATUS.get(msg.status, msg.status),
        "done": _DONE.get(done.choice, "Done."),
        "explanation": _explain(msg),
        "four_eyes": False,
    }
    return templates.TemplateResponse(request, "sender.html", values)
