"""ccguard as a milter of a real, private Postfix: every action, through Postfix's own replies.

Each test starts its own Postfix (own config, queue and maillog, 127.0.0.1 only) with
``smtpd_milters`` pointing at a real ccguard milter started in the test's loop, and a
recording aiosmtpd upstream as Postfix's relayhost.  ccguard's own deliveries (split
copies, releases, notices) go to Postfix's re-injection listener, which runs no milters.
Expectations are the SMTP path's: the same bytes are sent through a ccguard SMTP front
and compared with what Postfix delivered after the milter's edits.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.helpers.milter import (
    ADMIN_PASSWORD,
    RULES,
    SmtpResult,
    delivered_one,
    externals,
    message,
    milter_stack,
    postfix_dirs,
    smtp_path,
    wait_until,
    without_postfix_received,
)
from tests.helpers.milter_probe import RecordingMilter
from tests.helpers.postfix import PostfixInstance
from tests.helpers.upstream import RecordingUpstream

__all__ = ["postfix_dirs"]  # the fixture, used by name

pytestmark = pytest.mark.postfix


async def test_pass_delivers_the_message_unchanged_but_forged_tags(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    forged = b"X-CCGuard-Action: pass\r\nx-ccguard-rule: approved\r\n"
    data = message(1, "pass", extra=forged)
    async with milter_stack(postfix_dirs, upstream) as stack:
        result = await asyncio.to_thread(stack.send, data, ["p0@example.com"])
        got = await delivered_one(stack)
    assert result.code == 250 and result.text.startswith("2.0.0 Ok: queued as"), result
    assert without_postfix_received(got) == message(1, "pass")
    _, expected = await smtp_path(data, ["p0@example.com"])
    assert without_postfix_received(got) == expected


async def test_rewrite_changes_every_occurrence_exactly_as_the_smtp_path(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    forged = b"X-CCGuard-Action: pass\r\n"
    data = message(4, "rewrite", extra=forged)
    rcpts = [*externals(4), "colleague@example.org"]
    async with milter_stack(postfix_dirs, upstream) as stack:
        result = await asyncio.to_thread(stack.send, data, rcpts)
        got = await delivered_one(stack)
        assert sorted(stack.upstream.messages[0].rcpt_tos) == sorted(rcpts)  # envelope kept
    smtp_result, expected = await smtp_path(data, rcpts)
    assert result.code == 250 and smtp_result.code == 250
    assert without_postfix_received(got) == expected
    assert got.startswith(b"X-CCGuard-Action: rewrite\r\nX-CCGuard-Rule: hide-external\r\n")
    assert b"example.com" not in got.split(b"\r\n\r\n", 1)[0]
    assert b"To: Colleague <colleague@example.org>\r\n" in got
    assert b"CC: boss@example.org\r\nto: team@example.org\r\n" in got


async def test_monitor_mode_tags_like_the_smtp_path(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    data = message(9, "monitor")
    policy = {**RULES, "mode": "monitor"}
    async with milter_stack(postfix_dirs, upstream, policy=policy) as stack:
        result = await asyncio.to_thread(stack.send, data, externals(9))
        got = await delivered_one(stack)
    _, expected = await smtp_path(data, externals(9), policy=policy)
    assert result.code == 250
    assert without_postfix_received(got) == expected
    assert got.startswith(b"X-CCGuard-Action: monitor; would=quarantine\r\n")


async def test_reject_gives_the_smtp_paths_550_and_delivers_nothing(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    data = message(6, "reject")
    async with milter_stack(postfix_dirs, upstream) as stack:
        result = await asyncio.to_thread(stack.send, data, externals(6))
        queued = await asyncio.to_thread(stack.postfix.queue_ids)
    smtp_result, _ = await smtp_path(data, externals(6))
    assert (result.code, result.text) == (550, smtp_result.text), result
    assert result.text.startswith("5.7.1 Message would show 6 external addresses")
    assert upstream.messages == [] and queued == []


def api(port: int, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    token = base64.b64encode(f"alice:{ADMIN_PASSWORD}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


async def test_quarantine_holds_then_discards_and_release_delivers_once(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    data = message(8, "hold")
    async with milter_stack(postfix_dirs, upstream) as stack:
        result = await asyncio.to_thread(stack.send, data, externals(8))
        admin = stack.relay.http_port("admin")
        listing = await asyncio.to_thread(api, admin, "GET", "/api/quarantine")
        (item,) = listing["items"]
        held = await stack.relay.store.get(item["id"])
        assert upstream.messages == []  # discarded by Postfix, held by ccguard
        assert await asyncio.to_thread(stack.postfix.queue_ids) == []
        answer = await asyncio.to_thread(
            api, admin, "POST", f"/api/quarantine/{item['id']}/release", {"mode": "as-is"}
        )
        assert answer["status"] == "released", answer
        got = await delivered_one(stack)
        again = await asyncio.to_thread(_release_again, admin, item["id"])
        await asyncio.sleep(0)
    assert result.code == 250, result
    assert held is not None and held.message == data
    assert sorted(upstream.messages[0].rcpt_tos) == externals(8)
    assert without_postfix_received(got) == data
    assert again == 409 and len(upstream.messages) == 1
    held_line = [e for e in stack.log.events() if e.get("event") == "message_held"]
    assert held_line and held_line[0]["queue_id"] == _postfix_queue_id(result)


def _release_again(port: int, message_id: str) -> int:
    try:
        api(port, "POST", f"/api/quarantine/{message_id}/release", {"mode": "as-is"})
    except urllib.error.HTTPError as err:
        return err.code
    return 200


def _postfix_queue_id(result: SmtpResult) -> str:
    return result.text.rsplit(" ", 1)[1]


async def test_split_delivers_one_copy_each_then_discards(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    data = message(5, "split")
    rcpts = [*externals(5), "colleague@example.org"]
    async with milter_stack(postfix_dirs, upstream) as stack:
        result = await asyncio.to_thread(stack.send, data, rcpts)
        await wait_until(lambda: len(upstream.messages) >= 6, "six copies", stack.postfix)
        await wait_until(lambda: not stack.postfix.queue_ids(), "an empty queue", stack.postfix)
    assert result.code == 250, result
    by_rcpt = sorted((tuple(m.rcpt_tos), m.data) for m in upstream.messages)
    assert [r for r, _ in by_rcpt] == sorted(
        [(r,) for r in externals(5)] + [("colleague@example.org",)]
    )
    for (rcpt,), copy in by_rcpt:
        head = copy.split(b"\r\n\r\n", 1)[0]
        shown = set(re.findall(rb"p\d@example\.com", head))
        assert shown == ({rcpt.encode()} if rcpt.endswith("example.com") else set()), (rcpt, head)
        assert b"X-CCGuard-Action: split" in head


async def test_a_milter_listed_after_ccguard_sees_its_edits(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    """Why the README says: list ccguard before a DKIM signer in smtpd_milters, and the
    signer signs the header fields ccguard rewrote (and its tags)."""
    signer = await RecordingMilter().start()
    data = message(4, "signed-after")
    try:
        async with milter_stack(postfix_dirs, upstream, then_milter=signer.port) as stack:
            result = await asyncio.to_thread(stack.send, data, externals(4))
            got = await delivered_one(stack)
    finally:
        await signer.stop()
    assert result.code == 250
    (seen,) = signer.headers
    shown = b"".join(f"{name}:".encode() + value + b"\r\n" for name, value in seen)
    assert without_postfix_received(got).startswith(shown.replace(b"\n\t", b"\r\n\t"))
    assert seen[0] == ("X-CCGuard-Action", b" rewrite")


async def test_rewrite_of_resent_fields_and_an_all_external_to_matches_the_smtp_path(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    """To left empty becomes undisclosed-recipients:; (one, where the first To was), the
    second To and an emptied Resent-Cc go, Resent-To keeps its internal address."""
    data = (
        b"From: Alice <alice@example.org>\r\n"
        b"Resent-From: Desk <desk@example.org>\r\n"
        b"Resent-Date: Mon, 02 Mar 2026 09:00:00 +0000\r\n"
        b"Resent-Message-ID: <resent-1@example.org>\r\n"
        b"Resent-To: p0@example.com, desk2@example.org\r\n"
        b"Resent-Cc: p1@example.com\r\n"
        b"To: p2@example.com,\r\n p3@example.com\r\n"
        b"Subject: resent\r\n"
        b"TO: p4@example.com\r\n"
        b"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
        b"Message-ID: <resent@example.org>\r\n"
        b"\r\nBody\r\n"
    )
    policy = {"rules": [{"name": "hide", "min_visible_external": 3, "action": "rewrite"}]}
    async with milter_stack(postfix_dirs, upstream, policy=policy) as stack:
        result = await asyncio.to_thread(stack.send, data, externals(5))
        got = await delivered_one(stack)
    _, expected = await smtp_path(data, externals(5), policy=policy)
    assert result.code == 250
    assert without_postfix_received(got) == expected
    head = got.split(b"\r\n\r\n", 1)[0]
    assert b"To: undisclosed-recipients:;\r\nSubject: resent\r\nDate:" in head
    assert b"Resent-To: desk2@example.org\r\n" in head and b"Resent-Cc" not in head
