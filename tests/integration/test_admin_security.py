"""Security review fixes, on a real uvicorn server, real SQLite store and real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.admin import Env, admin_env, audit_of, basic, new_message

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
