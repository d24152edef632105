"""The workbench pages over real HTTP: search with page counts and a no-match reason,
the confirm step, bulk decisions with a summary after the redirect, the history panel,
recipients marked internal / external, the audit page, the favicon and the login form."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.admin import EXTERNAL_RCPTS, INTERNAL_RCPTS, Env, admin_env, new_message
from tests.integration.test_admin_web import _csrf, _login


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with admin_env(tmp_path) as running:
        await _login(running.client)
        yield running


def _down_for(marker: bytes) -> Any:
    def hook(envelope: Any) -> str | None:
        return "421 4.3.2 upstream going down" if marker in envelope.original_content else None

    return hook


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_search_counts_pages_and_keeps_filters(env: Env) -> None:
    for i in range(120):
        await env.store.put(new_message(f"Invoice {i:03}", received_at=1_700_000_000 + i))
    await env.store.put(new_message("Holiday plans", received_at=1_700_000_500))
    page = await env.client.get("/quarantine?subject=invoice&page=2")
    assert page.status_code == 200
    text = _text(page.text)
    assert "120 messages held, newest first · page 2 of 3." in text
    assert "Invoice 069" in text and "Invoice 070" not in text and "Holiday" not in text
    assert 'href="/quarantine?status=held&amp;subject=invoice&amp;page=3"' in page.text
    assert 'value="invoice"' in page.text  # the search box keeps what was typed
    by_date = await env.client.get("/quarantine?since=2023-11-14&until=2023-11-14&status=all")
    assert "121 messages, newest first · page 1 of 3." in _text(by_date.text)


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("subject=nothing-like-this", 'No held message has subject "nothing-like-this"'),
        ("rcpt_domain=example.edu", 'No held message has recipient domain "example.edu"'),
        ("sender=*@example.com", 'No held message has sender "*@example.com"'),
        (
            "subject=Welcome&rule=nosuch",
            'No held message has rule "nosuch": that filter excludes everything.',
        ),
        (
            "subject=Welcome&rcpt_domain=example.net&sender=nobody",
            'No held message has sender "nobody"',
        ),
        ("subject=Welcome&since=2030-01-01", 'No held message has received since "2030-01-01"'),
    ],
)
async def test_no_match_names_the_filter_that_excluded_everything(
    env: Env, query: str, says: str
) -> None:
    await env.store.put(new_message("Welcome to the training"))
    await env.store.put(new_message("Other news", rule="other"))
    page = await env.client.get(f"/quarantine?{query}")
    assert page.status_code == 200
    assert says in _text(page.text).replace("&#34;", '"')


async def test_no_match_when_filters_only_exclude_together(env: Env) -> None:
    await env.store.put(new_message("Welcome", rule="bulk-external"))
    await env.store.put(new_message("Other", rule="other"))
    page = await env.client.get("/quarantine?subject=Other&rule=bulk-external")
    said = _text(page.text).replace("&#34;", '"')
    assert "Each filter matches some held messages, but not together" in said
    assert 'without subject "Other" 1 would match' in said
    empty = await env.client.get("/quarantine?status=released&subject=x")
    assert "There are no released messages at all." in _text(empty.text)
    bad = await env.client.get("/quarantine?since=someday")
    assert bad.status_code == 400 and "not a time" in bad.text


async def test_release_as_sent_and_delete_go_through_a_confirm_page(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    detail = await env.client.get(f"/quarantine/{msg_id}")
    # The detail page has no form that releases as sent or deletes in one click.
    assert 'value="as-is"' not in detail.text and f"/quarantine/{msg_id}/delete" not in detail.text
    assert f'href="/quarantine/{msg_id}/confirm/release-as-is"' in detail.text
    confirm = await env.client.get(f"/quarantine/{msg_id}/confirm/release-as-is")
    said = _text(confirm.text)
    n = len(INTERNAL_RCPTS) + len(EXTERNAL_RCPTS)
    assert f"All {n} recipients receive the message exactly as it was written." in said
    assert (
        f"Every recipient sees all {n} visible addresses, {len(EXTERNAL_RCPTS)} of them external"
        in said
    )
    assert env.upstream.messages == []  # looking at the confirm page does nothing
    form = {"csrf_token": _csrf(confirm.text), "mode": "as-is"}
    done = await env.client.post(f"/quarantine/{msg_id}/release", data=form)
    assert done.status_code == 303  # POST/redirect/GET: a reload shows, never repeats
    shown = await env.client.get(done.headers["location"])
    assert "delivered as sent" in shown.text
    again = await env.client.get(done.headers["location"])
    assert again.status_code == 200 and len(env.upstream.messages) == 1

    other = await env.store.put(new_message("to delete"))
    page = await env.client.get(f"/quarantine/{other}/confirm/delete")
    assert "Nobody receives it" in page.text and "cannot be undone" in page.text
    assert (await env.store.get(other)).status == "held"  # type: ignore[union-attr]
    late = await env.client.get(f"/quarantine/{msg_id}/confirm/delete")
    assert late.status_code == 409 and "already released" in late.text
    assert (await env.client.get(f"/quarantine/{other}/confirm/shred")).status_code == 404


async def test_bulk_release_confirms_then_acts_then_summarises_each(env: Env) -> None:
    fine = [await env.store.put(new_message(f"fine {i}")) for i in range(2)]
    down = await env.store.put(new_message("DOWNSTREAM"))
    untouched = await env.store.put(new_message("not ticked"))
    env.upstream.data_hook = _down_for(b"DOWNSTREAM")
    listing = await env.client.get("/quarantine")
    token = _csrf(listing.text)
    form = {"csrf_token": token, "bulk_action": "release-hidden", "ids": [*fine, down]}
    confirm = await env.client.post("/quarantine/bulk", data=form)
    assert confirm.status_code == 200
    assert "Release 3 messages with recipients hidden?" in _text(confirm.text)
    assert env.upstream.messages == []  # nothing happens before the confirmation
    go = await env.client.post("/quarantine/bulk", data={**form, "confirmed": "yes"})
    assert go.status_code == 303 and go.headers["location"].startswith("/quarantine/bulk/done?")
    summary = await env.client.get(go.headers["location"])
    said = _text(summary.text)
    assert "2 of 3 messages released with recipients hidden" in said
    assert "1 message could not be released" in said
    assert said.count("upstream failed") == 1 and "fine 0" in said and "DOWNSTREAM" in said
    assert len(env.upstream.messages) == 2
    assert (await env.store.get(down)).status == "held"  # type: ignore[union-attr]
    assert (await env.store.get(untouched)).status == "held"  # type: ignore[union-attr]
    await env.client.get(go.headers["location"])  # a reload repeats nothing
    assert len(env.upstream.messages) == 2


async def test_bulk_delete_all_matching_the_search(env: Env) -> None:
    doomed = [await env.store.put(new_message(f"spam {i}", rule="spam")) for i in range(3)]
    kept = await env.store.put(new_message("keep me"))
    listing = await env.client.get("/quarantine?rule=spam")
    assert "all 3 matching this search" in listing.text
    form = {
        "csrf_token": _csrf(listing.text), "bulk_action": "delete", "all_matching": "yes",
        "status": "held", "rule": "spam",
    }  # fmt: skip
    confirm = await env.client.post("/quarantine/bulk", data=form)
    assert "Delete 3 messages?" in _text(confirm.text)
    ids = re.findall(r'name="ids" value="([^"]+)"', confirm.text)
    assert sorted(ids) == sorted(doomed)
    again = {"csrf_token": form["csrf_token"], "bulk_action": "delete", "confirmed": "yes"}
    go = await env.client.post("/quarantine/bulk", data={**again, "ids": ids})
    summary = await env.client.get(go.headers["location"])
    assert "3 of 3 messages deleted" in _text(summary.text)
    assert {(await env.store.get(i)).status for i in doomed} == {"deleted"}  # type: ignore[union-attr]
    assert (await env.store.get(kept)).status == "held"  # type: ignore[union-attr]
    nothing = await env.client.post(
        "/quarantine/bulk", data={"csrf_token": form["csrf_token"], "bulk_action": "delete"}
    )
    assert nothing.status_code == 400 and "Nothing was selected" in nothing.text
    forged = await env.client.post("/quarantine/bulk", data={"bulk_action": "delete", "ids": kept})
    assert forged.status_code == 403
    assert (await env.store.get(kept)).status == "held"  # type: ignore[union-attr]


async def test_detail_shows_history_and_marks_internal_recipients(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    await env.store.add_audit("sender:5be2c1", "request", msg_id, "ok", "wants=hidden")
    await env.client.get(f"/quarantine/{msg_id}")
    page = await env.client.get(f"/quarantine/{msg_id}")
    history = page.text[page.text.index('id="history"') :]
    rows = re.findall(r"<tr><td[^>]*>[^<]+</td><td[^>]*>([^<]+)</td><td[^>]*>([^<]+)</td>", history)
    assert rows == [
        ("ccguard", "received"), ("sender:5be2c1", "request"),
        ("alice", "view"), ("alice", "view"),
    ]  # fmt: skip
    for internal in INTERNAL_RCPTS:
        assert f'<li class="internal"><span class="addr">{internal}</span>' in page.text
    for external in EXTERNAL_RCPTS:
        assert f'<li class="external"><span class="addr">{external}</span>' in page.text
    assert f"{len(EXTERNAL_RCPTS)} external, {len(INTERNAL_RCPTS)} internal" in page.text


async def test_audit_page_filters_and_pages(env: Env) -> None:
    for i in range(60):
        await env.store.add_audit("bob", "view", f"m{i}", "ok")
    await env.store.add_audit("carol", "delete", "m1", "ok")
    page = await env.client.get("/audit?user=bob&page=2")
    said = _text(page.text)
    assert "60 entries, newest first · page 2 of 2." in said
    assert "carol" not in said and 'href="/quarantine/m0"' in page.text
    only = await env.client.get("/audit?action=delete")
    assert "1 entry" in _text(only.text) and "carol" in only.text
    assert (await env.client.get("/audit?since=nope")).status_code == 400


async def test_favicon_and_user_name_kept_after_a_wrong_password(env: Env) -> None:
    icon = await env.client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in icon.content
    await env.client.post(
        "/logout", data={"csrf_token": _csrf((await env.client.get("/quarantine")).text)}
    )
    form = await env.client.get("/login")
    wrong = await env.client.post(
        "/login",
        data={"username": "alice", "password": "nope", "csrf_token": _csrf(form.text)},
    )
    assert wrong.status_code == 401
    assert (
        'id="username" name="username" type="text" autocomplete="username" value="alice"'
        in wrong.text
    )
    assert 'rel="icon" href="/static/favicon.svg"' in wrong.text


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("/quarantine?until=9999-12-31", "until"),
        ("/audit?until=9999-12-31", "until"),
    ],
)
async def test_a_date_at_the_end_of_the_calendar_is_a_bad_filter_not_a_crash(
    env: Env, path: str, says: str
) -> None:
    # <input type="date"> lets a reviewer pick 9999-12-31; "the whole of that day" is past
    # the last date Python can hold.  A 400 naming the field, never a 500.
    await env.store.put(new_message())
    page = await env.client.get(path)
    assert page.status_code == 400, page.text[:300]
    assert says in _text(page.text)


async def test_a_page_number_past_any_store_integer_is_an_empty_page_not_a_crash(
    env: Env,
) -> None:
    await env.store.put(new_message("Only one"))
    for path in ("/quarantine?page=" + "9" * 30, "/audit?page=" + "9" * 30):
        page = await env.client.get(path)
        assert page.status_code == 200, (path, page.status_code)
        assert "Only one" not in page.text


async def test_a_page_past_the_last_says_so_and_links_to_the_last(env: Env) -> None:
    # It said "page 7 of 1" over "No messages match." although one did.
    await env.store.put(new_message("Only one"))
    for path, last in (
        ("/quarantine?subject=only&page=7", "/quarantine?status=held&amp;subject=only&amp;page=1"),
        ("/audit?page=7", "/audit?page=1"),
    ):
        page = await env.client.get(path)
        text = _text(page.text)
        assert page.status_code == 200
        assert "Page 7 is past the last page. Go to page 1" in text, text[-400:]
        assert f'href="{last}"' in page.text
        assert "of 1." not in text and "No messages match" not in text
