"""The HTML pages: login, sessions, CSRF, list, detail, release / delete and logout."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from relay.admin import CONTENT_SECURITY_POLICY
from tests.helpers.admin import (
    EXTERNAL_RCPTS,
    INTERNAL_RCPTS,
    PASSWORD,
    Env,
    admin_env,
    audit_of,
    new_message,
)

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with admin_env(tmp_path) as running:
        yield running


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


async def _login(client: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/login")
    form = {"username": "alice", "password": password, "csrf_token": _csrf(page.text)}
    return await client.post("/login", data=form)


async def test_login_page_is_accessible_and_sets_a_strict_cookie(env: Env) -> None:
    resp = await env.client.get("/login")
    assert resp.status_code == 200
    assert '<html lang="en">' in resp.text
    assert '<label for="username">' in resp.text and 'id="username"' in resp.text
    assert '<label for="password">' in resp.text and 'id="password"' in resp.text
    assert "<h1>Log in</h1>" in resp.text
    assert resp.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    cookie = resp.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie


async def test_cookie_is_secure_when_served_over_tls(tmp_path: Path) -> None:
    async with admin_env(tmp_path, tls_cert="cert.pem", tls_key="key.pem") as env:
        resp = await env.client.get("/login")
        assert "secure" in resp.headers["set-cookie"].lower()


async def test_pages_redirect_to_login_without_a_session(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    for path in ["/quarantine", f"/quarantine/{msg_id}"]:
        resp = await env.client.get(path)
        assert resp.status_code == 303
        assert resp.headers["location"].startswith("/login?next=%2Fquarantine")
    assert await audit_of(env, msg_id) == []


async def test_login_without_csrf_token_is_refused(env: Env) -> None:
    await env.client.get("/login")
    resp = await env.client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert resp.status_code == 403
    assert (await env.client.get("/quarantine")).status_code == 303


async def test_wrong_password_says_nothing_about_which_part(env: Env) -> None:
    resp = await _login(env.client, "wrong")
    assert resp.status_code == 401
    assert "Wrong user name or password." in resp.text
    assert (await env.client.get("/quarantine")).status_code == 303
    assert await audit_of(env) == [("alice", "login", "failed")]


async def test_login_list_detail_release_logout(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    resp = await _login(env.client)
    assert resp.status_code == 303 and resp.headers["location"] == "/overview"

    listing = await env.client.get("/quarantine")
    assert listing.status_code == 200
    assert "Welcome to the training" in listing.text
    assert f'href="/quarantine/{msg_id}"' in listing.text
    assert f'<td class="num" data-label="External">{len(EXTERNAL_RCPTS)}</td>' in listing.text
    assert "bulk-external" in listing.text

    detail = await env.client.get(f"/quarantine/{msg_id}")
    assert detail.status_code == 200
    assert "trainee0@example.com" in detail.text
    assert f"{len(EXTERNAL_RCPTS)} external addresses" in detail.text
    assert "Release with recipients hidden" in detail.text and "Release as sent" in detail.text

    form = {"csrf_token": _csrf(detail.text), "mode": "as-is"}
    released = await env.client.post(f"/quarantine/{msg_id}/release", data=form)
    assert released.status_code == 303
    page = await env.client.get(released.headers["location"])
    assert "Released: the message was delivered as sent." in page.text
    assert len(env.upstream.messages) == 1

    old_cookies = dict(env.client.cookies)
    out = await env.client.post("/logout", data={"csrf_token": _csrf(page.text)})
    assert out.status_code == 303
    assert (await env.client.get("/quarantine")).status_code == 303
    # The old cookie, replayed, is dead too.
    async with httpx.AsyncClient(base_url=env.url, cookies=old_cookies) as replay:
        assert (await replay.get("/quarantine")).status_code == 303
    assert await audit_of(env) == [
        ("alice", "login", "ok"),
        ("alice", "view", "ok"),
        ("alice", "release", "ok"),
        ("alice", "view", "ok"),  # the page shown after the release
        ("alice", "logout", "ok"),
    ]


@pytest.mark.parametrize("token", [None, "forged-token"])
async def test_release_form_without_the_right_csrf_token_is_403(
    env: Env, token: str | None
) -> None:
    msg_id = await env.store.put(new_message())
    await _login(env.client)
    form = {"mode": "as-is"} | ({"csrf_token": token} if token else {})
    resp = await env.client.post(f"/quarantine/{msg_id}/release", data=form)
    assert resp.status_code == 403
    assert env.upstream.messages == []
    stored = await env.store.get(msg_id)
    assert stored is not None and stored.status == "held"


async def test_cookie_session_on_the_api_needs_the_csrf_header(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    await _login(env.client)
    token = _csrf((await env.client.get("/quarantine")).text)
    url = f"/api/quarantine/{msg_id}/delete"
    assert (await env.client.post(url, json={})).status_code == 403
    ok = await env.client.post(url, json={}, headers={"X-CSRF-Token": token})
    assert ok.status_code == 200


async def test_upstream_down_page_says_message_is_still_held(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    await _login(env.client)
    detail = await env.client.get(f"/quarantine/{msg_id}")
    await env.upstream.stop()
    form = {"csrf_token": _csrf(detail.text), "mode": "as-is"}
    resp = await env.client.post(f"/quarantine/{msg_id}/release", data=form)
    assert resp.status_code == 502
    assert "did not accept the message" in resp.text and "It is still held" in resp.text
    stored = await env.store.get(msg_id)
    assert stored is not None and stored.status == "held"


async def test_delete_from_the_page(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    await _login(env.client)
    detail = await env.client.get(f"/quarantine/{msg_id}")
    resp = await env.client.post(
        f"/quarantine/{msg_id}/delete", data={"csrf_token": _csrf(detail.text)}
    )
    assert resp.status_code == 303
    page = await env.client.get(resp.headers["location"])
    assert "Deleted: the message was removed" in page.text
    assert "Welcome to the training" not in page.text  # the held list no longer has it
    again = await env.client.post(
        f"/quarantine/{msg_id}/delete", data={"csrf_token": _csrf(page.text)}
    )
    assert again.status_code == 409
    assert "already deleted" in again.text


async def test_html_body_is_shown_as_text_never_rendered(env: Env) -> None:
    html = (
        "<html><head><style>p{color:red}</style><script>alert('x')</script></head>"
        "<body><p>Hello <b>trainees</b></p><img src='http://example.com/pixel.png'></body></html>"
    )
    msg_id = await env.store.put(new_message("HTML one", html=html))
    await _login(env.client)
    page = await env.client.get(f"/quarantine/{msg_id}")
    assert "<script>alert" not in page.text
    assert "http://example.com/pixel.png" not in page.text
    assert "<b>trainees</b>" not in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


async def test_login_redirects_only_to_local_pages(env: Env) -> None:
    page = await env.client.get("/login?next=//evil.example.com/")
    form = {
        "username": "alice",
        "password": PASSWORD,
        "csrf_token": _csrf(page.text),
        "next": "//evil.example.com/",
    }
    resp = await env.client.post("/login", data=form)
    assert resp.status_code == 303 and resp.headers["location"] == "/overview"


async def test_message_with_malformed_headers_has_a_detail_page(env: Env) -> None:
    raw = b'From: a@example.org\r\nReply-To: undisclosed-recipients:;;;;:\r\nTo: "\r\n\r\nHi\r\n'
    msg_id = await env.store.put(dataclasses.replace(new_message(), message=raw))
    await _login(env.client)
    page = await env.client.get(f"/quarantine/{msg_id}")
    assert page.status_code == 200
    assert "undisclosed-recipients:;;;;:" in page.text and "Hi" in page.text


def _progress_box(html: str) -> str:
    assert "<h2>Release progress</h2>" in html
    return html.split("<h2>Release progress</h2>")[1].split("</section>")[0]


async def test_released_page_says_how_many_recipients_got_it(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    await _login(env.client)
    detail = await env.client.get(f"/quarantine/{msg_id}")
    assert "<h2>Release progress</h2>" not in detail.text  # nothing delivered yet
    form = {"csrf_token": _csrf(detail.text), "mode": "hidden"}
    released = await env.client.post(f"/quarantine/{msg_id}/release", data=form)
    page = await env.client.get(released.headers["location"])
    total = len(EXTERNAL_RCPTS) + len(INTERNAL_RCPTS)
    box = " ".join(re.sub(r"<[^>]+>", " ", _progress_box(page.text)).split())
    assert box == f"Delivered to {total} of {total} recipients."
    assert "(recipients hidden)" in page.text
