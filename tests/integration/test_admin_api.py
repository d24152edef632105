"""The JSON API on a real uvicorn server, real SQLite store and a real SMTP upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.admin import (
    EXTERNAL_RCPTS,
    PASSWORD,
    Env,
    admin_env,
    audit_of,
    basic,
    new_message,
)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with admin_env(tmp_path) as running:
        yield running


async def test_every_endpoint_needs_credentials(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    calls = [
        ("GET", "/api/quarantine"),
        ("GET", f"/api/quarantine/{msg_id}"),
        ("POST", f"/api/quarantine/{msg_id}/release"),
        ("POST", f"/api/quarantine/{msg_id}/delete"),
    ]
    for method, path in calls:
        resp = await env.client.request(method, path, json={} if method == "POST" else None)
        assert resp.status_code == 401, path
        assert resp.headers["www-authenticate"].startswith("Basic")
        assert resp.json()["error"] == "unauthorized"
    assert (await env.store.get(msg_id)).status == "held"  # type: ignore[union-attr]


async def test_wrong_password_and_unknown_user_look_the_same(env: Env) -> None:
    wrong_pw = await env.client.get("/api/quarantine", headers=basic("alice", "nope"))
    unknown = await env.client.get("/api/quarantine", headers=basic("mallory", PASSWORD))
    assert wrong_pw.status_code == unknown.status_code == 401
    assert wrong_pw.json() == unknown.json()
    audit = await audit_of(env)
    assert audit == [("alice", "login", "failed"), ("(unknown user)", "login", "failed")]


async def test_repeated_failures_are_slowed_down(env: Env) -> None:
    for _ in range(5):
        resp = await env.client.get("/api/quarantine", headers=basic("alice", "guess"))
        assert resp.status_code == 401
    # Now even the right password is not checked until the backoff has passed.
    resp = await env.client.get("/api/quarantine", headers=basic())
    assert resp.status_code == 429
    assert int(resp.headers["retry-after"]) >= 29
    assert ("alice", "login", "throttled") in await audit_of(env)


async def test_list_newest_first_with_filters_and_paging(env: Env) -> None:
    ids = [
        await env.store.put(new_message(f"msg {i}", received_at=1_700_000_000 + i, rule=rule))
        for i, rule in enumerate(["bulk", "bulk", "huge"])
    ]
    resp = await env.client.get("/api/quarantine", headers=basic())
    assert resp.status_code == 200
    body = resp.json()
    assert [item["id"] for item in body["items"]] == ids[::-1]
    first = body["items"][0]
    assert first["subject"] == "msg 2"
    assert first["exposure"]["visible_external"] == len(EXTERNAL_RCPTS)
    assert first["received_at"].endswith("Z")
    assert "rcpt_tos" not in first

    page = (await env.client.get("/api/quarantine?limit=1&offset=1", headers=basic())).json()
    assert [i["id"] for i in page["items"]] == [ids[1]]
    assert page["total"] == 3 and page["has_more"] is True
    by_rule = (await env.client.get("/api/quarantine?rule=huge", headers=basic())).json()
    assert [i["id"] for i in by_rule["items"]] == [ids[2]]
    released = (await env.client.get("/api/quarantine?status=released", headers=basic())).json()
    assert released["items"] == []


@pytest.mark.parametrize("query", ["status=bogus", "limit=-1", "limit=99999", "offset=x"])
async def test_list_rejects_bad_parameters(env: Env, query: str) -> None:
    resp = await env.client.get(f"/api/quarantine?{query}", headers=basic())
    assert resp.status_code == 400
    assert resp.json()["error"] == "bad_request"


async def test_detail_shows_recipients_and_text_and_is_audited(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    resp = await env.client.get(f"/api/quarantine/{msg_id}", headers=basic())
    assert resp.status_code == 200
    body = resp.json()
    assert body["rcpt_tos"][0] == "hr@example.org"
    assert set(EXTERNAL_RCPTS) <= set(body["rcpt_tos"])
    assert "training starts on Monday" in body["text_preview"]
    assert ["Subject", "Welcome to the training"] in body["headers"]
    assert await audit_of(env, msg_id) == [("alice", "view", "ok")]


async def test_unknown_id_is_404_everywhere(env: Env) -> None:
    for method, path, body in [
        ("GET", "/api/quarantine/nosuchid", None),
        ("POST", "/api/quarantine/nosuchid/release", {"mode": "as-is"}),
        ("POST", "/api/quarantine/nosuchid/delete", {}),
    ]:
        resp = await env.client.request(method, path, json=body, headers=basic())
        assert resp.status_code == 404, path
        assert resp.json()["error"] == "not_found"


async def test_release_as_is_delivers_and_second_release_is_409(env: Env) -> None:
    new = new_message()
    msg_id = await env.store.put(new)
    url = f"/api/quarantine/{msg_id}/release"
    resp = await env.client.post(url, json={"mode": "as-is"}, headers=basic())
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "released"
    assert resp.json()["upstream_reply"].startswith("250")
    [got] = env.upstream.messages
    assert got.data.replace(b"\r\n", b"\n") == new.message.replace(b"\r\n", b"\n")
    assert sorted(got.rcpt_tos) == sorted(new.rcpt_tos)

    again = await env.client.post(url, json={"mode": "as-is"}, headers=basic())
    assert again.status_code == 409
    assert again.json()["status"] == "released"
    assert len(env.upstream.messages) == 1
    stored = await env.store.get(msg_id)
    assert stored is not None and stored.released_by == "alice"
    assert await audit_of(env, msg_id) == [
        ("alice", "release", "ok"),
        ("alice", "release", "conflict"),
    ]


async def test_release_while_upstream_down_keeps_message_held(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    await env.upstream.stop()
    resp = await env.client.post(
        f"/api/quarantine/{msg_id}/release", json={"mode": "as-is"}, headers=basic()
    )
    assert resp.status_code == 502
    assert resp.json()["error"] == "upstream_failed"
    stored = await env.store.get(msg_id)
    assert stored is not None and stored.status == "held"
    assert await audit_of(env, msg_id) == [("alice", "release", "upstream_failed")]


@pytest.mark.parametrize("body", [{"mode": "everyone"}, {"mode": "rewrite"}, {"mode": 1}])
async def test_release_with_bad_mode_is_400(env: Env, body: object) -> None:
    msg_id = await env.store.put(new_message())
    resp = await env.client.post(f"/api/quarantine/{msg_id}/release", json=body, headers=basic())
    assert resp.status_code == 400
    assert resp.json()["error"] == "bad_mode"
    assert env.upstream.messages == []


async def test_release_with_broken_json_is_400(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    resp = await env.client.post(
        f"/api/quarantine/{msg_id}/release",
        content=b"{mode",
        headers={**basic(), "Content-Type": "application/json"},
    )
    assert resp.status_code == 400


async def test_delete_then_release_or_delete_again_is_409(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    resp = await env.client.post(f"/api/quarantine/{msg_id}/delete", json={}, headers=basic())
    assert resp.status_code == 200
    assert resp.json() == {"id": msg_id, "status": "deleted"}
    detail = (await env.client.get(f"/api/quarantine/{msg_id}", headers=basic())).json()
    assert detail["status"] == "deleted" and detail["deleted_by"] == "alice"
    assert "text_preview" not in detail  # the bytes are wiped
    for path, body in [("delete", {}), ("release", {"mode": "hidden"})]:
        again = await env.client.post(
            f"/api/quarantine/{msg_id}/{path}", json=body, headers=basic()
        )
        assert again.status_code == 409
        assert again.json()["status"] == "deleted"
    assert env.upstream.messages == []
    assert await audit_of(env, msg_id) == [
        ("alice", "delete", "ok"),
        ("alice", "view", "ok"),
        ("alice", "delete", "conflict"),
        ("alice", "release", "conflict"),
    ]


async def test_log_lines_say_who_what_result_without_addresses(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    await env.client.get(f"/api/quarantine/{msg_id}", headers=basic())
    await env.client.post(f"/api/quarantine/{msg_id}/delete", json={}, headers=basic())
    events = [kw for name, kw in env.log.events if name == "admin_action"]
    assert [(e["actor"], e["action"], e["target"], e["result"]) for e in events] == [
        ("alice", "view", msg_id, "ok"),
        ("alice", "delete", msg_id, "ok"),
    ]
    assert "@" not in repr(env.log.events)


async def test_release_hidden_delivers_the_rewritten_message(env: Env) -> None:
    new = new_message()
    msg_id = await env.store.put(new)
    resp = await env.client.post(
        f"/api/quarantine/{msg_id}/release", json={"mode": "hidden"}, headers=basic()
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["release_mode"] == "hidden"  # the name the request used
    listed = await env.client.get("/api/quarantine?status=released", headers=basic())
    assert [item["release_mode"] for item in listed.json()["items"]] == ["hidden"]
    shown = await env.client.get(f"/api/quarantine/{msg_id}", headers=basic())
    assert shown.json()["release_mode"] == "hidden"
    [got] = env.upstream.messages
    headers = got.data.split(b"\r\n\r\n", 1)[0].decode()
    assert not any(addr in headers for addr in EXTERNAL_RCPTS)
    assert "hr@example.org" in headers
    assert sorted(got.rcpt_tos) == sorted(new.rcpt_tos)  # everyone still gets it
    assert await audit_of(env, msg_id) == [("alice", "release", "ok"), ("alice", "view", "ok")]
