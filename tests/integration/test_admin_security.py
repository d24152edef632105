"""Security review fixes, on a real uvicorn server, real SQLite store and real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from relay.credentials.hashing import HashingPool
from relay.credentials.users import UserDB
from tests.helpers.admin import PASSWORD, Env, admin_env, audit_of, basic, new_message
from tests.helpers.waiting import wait_until

MALFORMED = b'From: a@example.org\r\nTo: "\r\nCc: a@[\r\nSubject: odd\r\n\r\nHello there\r\n'


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with admin_env(tmp_path) as running:
        yield running


async def _held(env: Env, raw: bytes) -> str:
    return await env.store.put(dataclasses.replace(new_message(), message=raw))


async def test_message_with_malformed_headers_can_be_viewed_and_is_audited_ok(env: Env) -> None:
    msg_id = await _held(env, MALFORMED)
    resp = await env.client.get(f"/api/quarantine/{msg_id}", headers=basic())
    assert resp.status_code == 200
    body = resp.json()
    assert ["To", '"'] in body["headers"] and ["Cc", "a@["] in body["headers"]
    assert "Hello there" in body["text_preview"]
    assert await audit_of(env, msg_id) == [("alice", "view", "ok")]


async def test_big_headers_do_not_stall_the_server(env: Env) -> None:
    cc = b"Cc: " + b", ".join(b"user%d@example.com" % i for i in range(20_000))
    msg_id = await _held(env, b"From: a@example.org\r\n" + cc + b"\r\n\r\nbody\r\n")
    views = [
        asyncio.create_task(env.client.get(f"/api/quarantine/{msg_id}", headers=basic()))
        for _ in range(3)
    ]
    await asyncio.sleep(0.05)
    started = time.monotonic()
    assert (await env.client.get("/static/admin.css")).status_code == 200
    waited = time.monotonic() - started
    for resp in await asyncio.gather(*views):
        assert resp.status_code == 200
        assert any("larger than" in note for note in resp.json()["notes"])
    assert waited < 1.0, f"a static file took {waited:.1f}s while previews were built"


async def test_concurrent_guesses_cannot_outrun_the_throttle(env: Env) -> None:
    # The helper's throttle lets 5 failures from one IP through, then backs off.
    guesses = [basic("alice", f"guess{i}") for i in range(99)] + [basic()]
    responses = await asyncio.gather(
        *(env.client.get("/api/quarantine", headers=h) for h in guesses)
    )
    codes = Counter(r.status_code for r in responses)
    assert codes[401] == 5, codes
    assert codes[200] <= 1 and codes[401] + codes[200] + codes[429] == 100, codes


async def _login_ips(env: Env) -> list[str]:
    return [e.detail for e in reversed(await env.store.list_audit()) if e.action == "login"]


async def test_forwarded_for_is_ignored_by_default(env: Env) -> None:
    codes = []
    for i in range(6):
        headers = {**basic(f"user{i}", "x"), "X-Forwarded-For": f"203.0.113.{i}"}
        codes.append((await env.client.get("/api/quarantine", headers=headers)).status_code)
    assert codes == [401] * 5 + [429]
    assert set(await _login_ips(env)) == {"ip=127.0.0.1"}


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(tmp_path: Path) -> None:
    async with admin_env(tmp_path, trusted_proxies=["127.0.0.1"]) as env:
        forged_then_real = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
        await env.client.get("/api/quarantine", headers={**basic("alice", "x"), **forged_then_real})
        assert await _login_ips(env) == ["ip=203.0.113.9"]


def _from(ip: str, password: str) -> dict[str, str]:
    return {**basic("alice", password), "X-Forwarded-For": ip}


async def test_failed_guesses_at_alice_do_not_lock_her_out(tmp_path: Path) -> None:
    async with admin_env(tmp_path, trusted_proxies=["127.0.0.1"]) as env:
        get = env.client.get
        for _ in range(5):
            assert (
                await get("/api/quarantine", headers=_from("203.0.113.5", "x"))
            ).status_code == 401
        assert (await get("/api/quarantine", headers=_from("203.0.113.5", "x"))).status_code == 429
        for i in range(31):  # many attackers, one guess each: past the user-wide limit of 30
            await get("/api/quarantine", headers=_from(f"203.0.113.{100 + i}", "x"))
        # Alice, from an address with no failures, still gets in at once ...
        assert (
            await get("/api/quarantine", headers=_from("198.51.100.7", PASSWORD))
        ).status_code == 200
        # ... while an attacker who failed before is held back by the user-wide limit.
        for i in range(31):
            await get("/api/quarantine", headers=_from(f"203.0.113.{100 + i}", "x"))
        retry = await get("/api/quarantine", headers=_from("203.0.113.100", "x"))
        assert retry.status_code == 429


async def test_login_flood_is_refused_and_leaves_the_default_executor_free(
    tmp_path: Path,
) -> None:
    pool = HashingPool()  # the default: 2 checks running, 8 waiting
    async with admin_env(tmp_path, hashing=pool, trusted_proxies=["127.0.0.1"]) as env:
        flood = asyncio.gather(
            *(
                env.client.get("/api/quarantine", headers=_from(f"10.0.{i // 250}.{i % 250}", "x"))
                for i in range(200)
            )
        )
        await wait_until(lambda: pool.in_use == 10, "the password checker is swamped")
        started = time.monotonic()
        await asyncio.to_thread(int)  # what message inspection and SQLite run on
        waited = time.monotonic() - started
        responses = await flood
    pool.close()
    codes = Counter(r.status_code for r in responses)
    assert set(codes) == {401, 503} and codes[503] > 100, codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.json()["error"] == "busy" and int(busy.headers["retry-after"]) >= 1
    assert waited < 0.5, f"the default executor was busy for {waited:.2f}s"


async def test_cross_site_form_post_with_cached_basic_credentials_changes_nothing(
    env: Env,
) -> None:
    msg_id = await _held(env, MALFORMED)
    form = {**basic(), "Content-Type": "application/x-www-form-urlencoded"}
    for action in ("release", "delete"):
        resp = await env.client.post(f"/api/quarantine/{msg_id}/{action}", headers=form)
        assert resp.status_code == 415, action
        assert resp.json()["error"] == "unsupported_media_type"
    stored = await env.store.get(msg_id)
    assert stored is not None and stored.status == "held" and env.upstream.messages == []


@pytest.mark.parametrize(
    "headers",
    [{"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example.net"}, {"Origin": "null"}],
)
async def test_cross_site_json_requests_are_refused(env: Env, headers: dict[str, str]) -> None:
    msg_id = await _held(env, MALFORMED)
    resp = await env.client.post(
        f"/api/quarantine/{msg_id}/delete", json={}, headers={**basic(), **headers}
    )
    assert resp.status_code == 403 and resp.json()["error"] == "cross_site"
    assert (await env.store.get(msg_id)).status == "held"  # type: ignore[union-attr]


async def test_same_origin_request_and_required_mode(env: Env) -> None:
    msg_id = await _held(env, MALFORMED)
    own = {**basic(), "Origin": env.url, "Sec-Fetch-Site": "same-origin"}
    url = f"/api/quarantine/{msg_id}/release"
    resp = await env.client.post(url, json={}, headers=own)
    assert resp.status_code == 400 and resp.json()["error"] == "bad_mode"
    assert env.upstream.messages == []
    resp = await env.client.post(url, json={"mode": "hidden"}, headers=own)
    assert resp.status_code == 200


async def _web_login(env: Env, password: str = PASSWORD) -> httpx.Response:
    page = await env.client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    form = {"username": "alice", "password": password, "csrf_token": token.group(1)}
    return await env.client.post("/login", data=form)


async def test_broken_users_file_gives_a_clear_503(env: Env, tmp_path: Path) -> None:
    assert (await _web_login(env)).status_code == 303
    (tmp_path / "users.json").write_text('{"users": {"alice": ')  # half written
    resp = await env.client.get("/api/quarantine", headers=basic())
    assert resp.status_code == 503 and resp.json()["error"] == "users_unavailable"
    page = await env.client.get("/quarantine")
    assert page.status_code == 503 and "users file cannot be read" in page.text
    assert any(name == "admin_users_file_unreadable" for name, _ in env.log.events)


async def _still_logged_in(env: Env) -> bool:
    resp = await env.client.get("/quarantine")
    return resp.status_code == 200


async def test_password_change_or_removal_ends_existing_sessions(env: Env, tmp_path: Path) -> None:
    users = UserDB(tmp_path / "users.json")
    await _web_login(env)
    assert await _still_logged_in(env)
    users.set_password("alice", "a brand new password")  # e.g. ccguard admin add-user alice
    assert not await _still_logged_in(env)
    assert (await _web_login(env, "a brand new password")).status_code == 303
    assert await _still_logged_in(env)
    users.remove("alice")
    assert not await _still_logged_in(env)


async def test_logged_out_cookie_stays_invalid_after_a_restart(tmp_path: Path) -> None:
    cookies = {}
    async with admin_env(tmp_path, session_secret="s3cret") as env:
        for who in ("kept", "ended"):
            env.client.cookies.clear()
            await _web_login(env)
            cookies[who] = env.client.cookies["ccguard_session"]
        page = await env.client.get("/quarantine")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token is not None
        await env.client.post("/logout", data={"csrf_token": token.group(1)})
        assert not await _still_logged_in(env)
    async with admin_env(tmp_path, session_secret="s3cret") as env:  # ccguard restarted
        for who, alive in (("kept", True), ("ended", False)):
            env.client.cookies.set("ccguard_session", cookies[who])
            assert await _still_logged_in(env) is alive, who
