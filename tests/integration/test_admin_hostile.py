"""Hostile requests to a real uvicorn-served admin: huge and deep bodies, cross-site forms."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.helpers.admin import PASSWORD, Env, admin_env, basic, new_message

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HUGE = 50 * 1024 * 1024
CHUNK = b"x" * (256 * 1024)
MiB = 1024 * 1024


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with admin_env(tmp_path) as running:
        yield running


def _vm(field: str) -> int:
    """A ``/proc/self/status`` memory figure in bytes (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


@contextmanager
def peak_rss_growth() -> Iterator[list[int]]:
    """Yields a list that receives, on exit, how far this process's peak RSS rose
    above its RSS at entry (the admin server runs in this process)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")  # resets VmHWM to the current RSS
    before = _vm("VmRSS")
    growth: list[int] = []
    yield growth
    growth.append(_vm("VmHWM") - before)


async def _push(port: int, head: bytes, body_chunks: Iterator[bytes]) -> tuple[bytes, int]:
    """Send ``head`` and then the chunks over a raw socket while reading the answer;
    stops sending once the server answered or hung up.  Returns (answer, bytes sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = bytearray()

    async def read() -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                answer.extend(chunk)

    reading = asyncio.create_task(read())
    sent = 0
    try:
        writer.write(head)
        for chunk in body_chunks:
            if reading.done():
                break
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
        await asyncio.wait_for(reading, 30)
    except ConnectionError:  # the server hung up on the rest of the body
        await asyncio.wait_for(reading, 30)
    finally:
        writer.close()
    return bytes(answer), sent


def _request(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunked(total: int) -> Iterator[bytes]:
    for _ in range(total // len(CHUNK)):
        yield b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n"
    yield b"0\r\n\r\n"


def _plain(total: int) -> Iterator[bytes]:
    for _ in range(total // len(CHUNK)):
        yield CHUNK


def _port(env: Env) -> int:
    port = urlsplit(env.url).port
    assert port is not None
    return port


async def _assert_refused_early(env: Env, headers: dict[str, str], chunks: Iterator[bytes]) -> None:
    msg_id = await env.store.put(new_message())
    head = _request(f"/api/quarantine/{msg_id}/release", headers)
    with peak_rss_growth() as growth:
        answer, sent = await _push(_port(env), head, chunks)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 413 Request Entity Too Large", answer[:200]
    assert b'"error":"too_large"' in rest and b"application/json" in rest.lower()
    assert sent < HUGE / 2, f"the server read {sent} bytes of a {HUGE}-byte body"
    assert growth[0] < 16 * MiB, f"peak RSS grew by {growth[0] / MiB:.0f} MiB"
    assert (await env.store.get(msg_id)).status == "held"  # type: ignore[union-attr]
    assert env.refused("too_large") == 1


async def test_oversized_body_with_content_length_is_refused_without_reading_it(env: Env) -> None:
    headers = {
        **basic(),
        "Content-Type": "application/json",
        "Content-Length": str(HUGE),
    }
    await _assert_refused_early(env, headers, _plain(HUGE))


async def test_oversized_chunked_body_is_refused_once_it_passes_the_cap(env: Env) -> None:
    headers = {**basic(), "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    await _assert_refused_early(env, headers, _chunked(HUGE))


async def test_body_longer_than_its_content_length_is_not_read_either(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    headers = {**basic(), "Content-Type": "application/json", "Content-Length": "2"}
    head = _request(f"/api/quarantine/{msg_id}/release", headers)
    with peak_rss_growth() as growth:
        answer, sent = await _push(_port(env), head, _plain(HUGE))
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]  # b"xx" is no JSON
    assert sent < HUGE / 2, f"the server read {sent} bytes of a {HUGE}-byte body"
    # The password check runs here (scrypt: 16 MiB of its own), the body adds nothing.
    assert growth[0] < 32 * MiB, f"peak RSS grew by {growth[0] / MiB:.0f} MiB"
    assert (await env.store.get(msg_id)).status == "held"  # type: ignore[union-attr]


async def test_body_just_over_the_cap_gets_413_and_at_the_cap_is_read(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    url = f"/api/quarantine/{msg_id}/release"
    cap = env.settings.max_request_bytes
    pad = '{"mode": "hidden", "pad": "%s"}'
    at_cap = pad % ("x" * (cap - len(pad % "")))
    headers = {**basic(), "Content-Type": "application/json"}
    over = await env.client.post(url, content=at_cap + " ", headers=headers)
    assert over.status_code == 413 and over.json()["error"] == "too_large"
    assert env.upstream.messages == []
    ok = await env.client.post(url, content=at_cap, headers=headers)
    assert ok.status_code == 200, ok.text
    assert len(env.upstream.messages) == 1


async def test_deeply_nested_json_gets_400_without_a_traceback(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    msg_id = await env.store.put(new_message())
    url = f"/api/quarantine/{msg_id}/release"
    headers = {**basic(), "Content-Type": "application/json"}
    caplog.set_level(logging.DEBUG)
    for body in ("[" * 4000, '{"mode": ' + "[" * 3000 + "]" * 3000 + "}"):
        resp = await env.client.post(url, content=body, headers=headers)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "too_deep"
    far_too_deep = await env.client.post(url, content="[" * 100_000, headers=headers)
    assert far_too_deep.status_code == 413
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert (await env.store.get(msg_id)).status == "held"  # type: ignore[union-attr]
    assert env.refused("too_deep") == 2 and env.refused("too_large") == 1


async def test_brackets_inside_strings_are_not_nesting(env: Env) -> None:
    msg_id = await env.store.put(new_message())
    body = '{"note": "' + "[{" * 1000 + '\\"]", "mode": "hidden"}'
    resp = await env.client.post(
        f"/api/quarantine/{msg_id}/release",
        content=body,
        headers={**basic(), "Content-Type": "application/json"},
    )
    assert resp.status_code == 200, resp.text


def _csrf(html: str) -> str:
    match = CSRF.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


async def test_oversized_login_form_is_refused(env: Env) -> None:
    page = await env.client.get("/login")
    form = {"username": "alice", "password": PASSWORD, "csrf_token": _csrf(page.text)}
    form["next"] = "/quarantine?" + "x" * (64 * 1024)
    resp = await env.client.post("/login", data=form)
    assert resp.status_code == 413
    assert (await env.client.get("/quarantine")).status_code == 303  # not logged in


CROSS_SITE = [
    {"Origin": "https://evil.example.net"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
]


@pytest.mark.parametrize("headers", CROSS_SITE)
async def test_cross_site_login_form_is_refused(env: Env, headers: dict[str, str]) -> None:
    page = await env.client.get("/login")
    form = {"username": "alice", "password": PASSWORD, "csrf_token": _csrf(page.text)}
    resp = await env.client.post("/login", data=form, headers=headers)
    assert resp.status_code == 403 and "another site" in resp.text
    assert (await env.client.get("/quarantine")).status_code == 303  # not logged in
    assert env.refused("cross_site") == 1


async def _logged_in(env: Env) -> None:
    page = await env.client.get("/login")
    form = {"username": "alice", "password": PASSWORD, "csrf_token": _csrf(page.text)}
    own = {"Origin": env.url, "Sec-Fetch-Site": "same-origin"}
    assert (await env.client.post("/login", data=form, headers=own)).status_code == 303


@pytest.mark.parametrize("headers", CROSS_SITE)
async def test_cross_site_action_with_a_valid_token_changes_nothing(
    env: Env, headers: dict[str, str]
) -> None:
    await _logged_in(env)
    msg_id = await env.store.put(dataclasses.replace(new_message()))
    token = _csrf((await env.client.get(f"/quarantine/{msg_id}")).text)
    for action, mode in (("release", "as-is"), ("delete", "")):
        resp = await env.client.post(
            f"/quarantine/{msg_id}/{action}",
            data={"csrf_token": token, "mode": mode},
            headers=headers,
        )
        assert resp.status_code == 403 and "another site" in resp.text, action
    resp = await env.client.post("/logout", data={"csrf_token": token}, headers=headers)
    assert resp.status_code == 403
    assert (await env.store.get(msg_id)).status == "held"  # type: ignore[union-attr]
    assert env.upstream.messages == []
    assert (await env.client.get("/quarantine")).status_code == 200  # still logged in
    assert env.refused("cross_site") == 3


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "OWN", "Sec-Fetch-Site": "same-origin"},
        # What Chromium sends for our own form under Referrer-Policy: no-referrer.
        {"Origin": "null", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "OWN"},
        {},  # not a browser (curl)
    ],
)
async def test_same_origin_action_still_works(env: Env, headers: dict[str, str]) -> None:
    await _logged_in(env)
    msg_id = await env.store.put(new_message())
    token = _csrf((await env.client.get(f"/quarantine/{msg_id}")).text)
    resp = await env.client.post(
        f"/quarantine/{msg_id}/release",
        data={"csrf_token": token, "mode": "as-is"},
        headers={k: env.url if v == "OWN" else v for k, v in headers.items()},
    )
    assert resp.status_code == 303, resp.text
    assert len(env.upstream.messages) == 1
    assert env.refused("cross_site") == 0
