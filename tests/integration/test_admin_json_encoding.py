"""A JSON body that is not UTF-8 is refused before it is scanned or parsed.

``json.loads`` on bytes also accepts UTF-16/32; the nesting scan read bytes,
so a UTF-16 body nested 1,900 deep slipped past it and ended in HTTP 500 with
a RecursionError traceback.  Real uvicorn-served admin, real SQLite store.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from relay.admin.bodies import JsonTooDeep, loads_bounded
from tests.helpers.admin import Env, admin_env, basic, new_message


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with admin_env(tmp_path) as running:
        yield running


DEEP = '["\\"", ' + "[" * 1900
SHALLOW = '{"mode": "hidden"}'


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-16", "utf-32-le"])
async def test_utf16_and_utf32_bodies_get_400_not_a_traceback(
    env: Env, caplog: pytest.LogCaptureFixture, encoding: str
) -> None:
    msg_id = await env.store.put(new_message())
    url = f"/api/quarantine/{msg_id}/release"
    headers = {**basic(), "Content-Type": "application/json"}
    caplog.set_level(logging.DEBUG)
    for text in (DEEP, SHALLOW):
        body = text.encode(encoding)
        assert len(body) < 8192  # under [admin] max_request_bytes: the parser path, not 413
        resp = await env.client.post(url, content=body, headers=headers)
        assert resp.status_code == 400, resp.text
        assert resp.json() == {
            "error": "bad_request",
            "message": 'the body must be UTF-8 JSON like {"mode": "hidden"}',
        }
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert (await env.store.get(msg_id)).status == "held"  # type: ignore[union-attr]
    assert env.upstream.messages == []
    # The same request in UTF-8 is released.
    ok = await env.client.post(url, content=SHALLOW.encode(), headers=headers)
    assert ok.status_code == 200, ok.text


def test_a_recursion_error_while_parsing_is_reported_as_too_deep() -> None:
    # With the pre-parse scan turned off (a huge limit), the parser itself recurses
    # too far: that is still "too deep", never a RecursionError.
    with pytest.raises(JsonTooDeep):
        loads_bounded(b"[" * 200_000 + b"]" * 200_000, max_depth=10**9)
