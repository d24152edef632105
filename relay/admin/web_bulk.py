"""Pages that ask before acting: the confirm step of "Release as sent" and "Delete",
and bulk decisions (confirm, act on each message, then a summary page).

No JavaScript and no browser dialog: a confirm step is a page of its own that
says what will happen, with a POST form to go ahead.  After a bulk run the
browser is redirected (POST/redirect/GET) to a summary built from the audit
log, so a reload shows it again and never repeats the run.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from relay.admin.bulk import BULK_ACTIONS, BULK_DELETE, count_outcomes, matching_ids, run_bulk
from relay.admin.context import context_of
from relay.admin.filters import MESSAGE_FIELDS, message_query
from relay.admin.review import MODE_AS_IS
from relay.admin.sessions import Session
from relay.admin.web import checked_post, error_page, field, render, to_login
from relay.quarantine.search import AuditQuery
from relay.quarantine.store import HELD, MessageSummary

__all__ = ["MAX_WEB_BULK", "bulk_web_routes"]

#: Most messages one bulk form decides (their ids travel in the summary page's URL).
MAX_WEB_BULK = 200
CONFIRMABLE = ("release-as-is", "delete")
_DECISIONS = ("release", "delete")


async def _confirm_one(request: Request) -> Response:
    ctx = context_of(request)
    session = await ctx.user_session(request)
    if session is None:
        return to_login(request)
    what = request.path_params["what"]
    stored = await ctx.review.store.get(request.path_params["id"])
    if what not in CONFIRMABLE or stored is None:
        return error_page(request, session, 404, "No such page", "Nothing to confirm here.")
    if stored.status != HELD:
        text = f"This message is already {stored.status}; there is nothing to decide."
        return error_page(request, session, 409, "Already decided", text)
    return render(
        request, "confirm.html", session,
        msg=stored, what=what, mode_as_is=MODE_AS_IS,
        recipients=len(set(stored.rcpt_tos)),
    )  # fmt: skip


async def _selected(request: Request, form_ids: list[str], form: dict[str, str]) -> list[str]:
    if form.get("all_matching") != "yes":
        return list(dict.fromkeys(form_ids))[:MAX_WEB_BULK]
    query = message_query({n: form.get(n, "") for n in MESSAGE_FIELDS}, time.time())
    return await matching_ids(context_of(request).review, query, MAX_WEB_BULK)


async def _summaries(request: Request, ids: list[str]) -> list[MessageSummary]:
    store = context_of(request).review.store
    found = [await store.get(i) for i in ids]
    return [m for m in found if m is not None]


async def _bulk(request: Request) -> Response:
    checked = await checked_post(request)
    if isinstance(checked, Response):
        return checked
    session, raw = checked
    form = {k: v for k, v in raw.items() if isinstance(v, str)}
    action = field(raw, "bulk_action") or ""
    if action not in BULK_ACTIONS:
        return error_page(request, session, 400, "Bad request", "Unknown bulk action.")
    form_ids = [v for v in raw.getlist("ids") if isinstance(v, str)]
    try:
        ids = await _selected(request, form_ids, form)
    except ValueError as exc:
        return error_page(request, session, 400, "Bad filter", str(exc))
    if not ids:
        text = 'Nothing was selected: tick some messages, or "all matching this filter".'
        return error_page(request, session, 400, "Nothing selected", text)
    if form.get("confirmed") != "yes":
        return await _confirm_bulk(request, session, action, ids)
    ctx = context_of(request)
    outcomes = await run_bulk(ctx.review, ids, action, str(session.user))
    count_outcomes(ctx.metrics, action, outcomes)
    target = "/quarantine/bulk/done?" + urlencode({"action": action, "ids": ",".join(ids)})
    return RedirectResponse(target, status_code=303)


async def _confirm_bulk(
    request: Request, session: Session, action: str, ids: list[str]
) -> Response:
    messages = await _summaries(request, ids)
    held = [m for m in messages if m.status == HELD]
    return render(
        request, "bulk_confirm.html", session,
        action=action, delete=action == BULK_DELETE, messages=held,
        skipped=len(ids) - len(held), capped=len(ids) >= MAX_WEB_BULK, limit=MAX_WEB_BULK,
    )  # fmt: skip


async def _bulk_done(request: Request) -> Response:
    """What happened to each message of a bulk run, read back from the audit log."""
    ctx = context_of(request)
    session = await ctx.user_session(request)
    if session is None:
        return to_login(request)
    action = request.query_params.get("action", "")
    ids = [i for i in request.query_params.get("ids", "").split(",") if i][:MAX_WEB_BULK]
    rows, store = [], ctx.review.store
    for message_id in ids:
        stored = await store.get(message_id)
        page = await store.search_audit(
            AuditQuery(target=message_id, actor=str(session.user)), limit=20
        )
        entry = next((e for e in page.items if e.action in _DECISIONS), None)
        rows.append((message_id, stored, entry))
    done = sum(1 for _, _, e in rows if e is not None and e.result == "ok")
    return render(
        request, "bulk_done.html", session,
        rows=rows, done=done, delete=action == BULK_DELETE,
    )  # fmt: skip


def bulk_web_routes() -> list[Route]:
    """The confirm step, the bulk form's target and the bulk summary."""
    return [
        Route("/quarantine/bulk", _bulk, methods=["POST"]),
        Route("/quarantine/bulk/done", _bulk_done, methods=["GET"]),
        Route("/quarantine/{id}/confirm/{what}", _confirm_one, methods=["GET"]),
    ]
