"""Review of the milter front (issue 15) against a real Postfix: what a retry, a
second message on the same connection and Postfix's own header additions do."""

from __future__ import annotations

import asyncio
import smtplib
import time

import pytest

from tests.helpers.milter import (
    SENDER,
    delivered_one,
    externals,
    message,
    milter_stack,
    postfix_dirs,
    smtp_path,
    submit,
    wait_until,
    without_postfix_received,
)
from tests.helpers.postfix import PostfixInstance
from tests.helpers.upstream import RecordingUpstream
from tests.integration.test_milter_postfix import api

__all__ = ["postfix_dirs"]  # the fixture, used by name

pytestmark = pytest.mark.postfix


def _bare(count: int, subject: str, missing: tuple[bytes, ...]) -> bytes:
    """``message`` without the ``missing`` fields: Postfix adds a Message-Id (with its
    queue id) and a Date (the arrival time) for a local client, as for many scripts' mail."""
    kept = [line for line in message(count, subject).split(b"\r\n") if not line.startswith(missing)]
    return b"\r\n".join(kept)


async def _next_second() -> None:
    """Wait (bounded) until the wall clock's second changes."""
    start = int(time.time())
    for _ in range(40):
        if int(time.time()) != start:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the clock did not move")


@pytest.mark.parametrize("missing", [(b"Date:", b"Message-ID:"), (b"Date:",)])
async def test_split_retry_of_a_message_postfix_completed_sends_each_copy_once(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream, missing: tuple[bytes, ...]
) -> None:
    """Postfix's additions differ at each retry (queue id, arrival time); the ledger must
    still know the retry, or every copy already delivered goes out again."""
    data = _bare(5, "split-bare", missing)
    upstream.refuse_rcpt["p3@example.com"] = "451 4.3.0 try later"
    async with milter_stack(postfix_dirs, upstream, deliver_to=upstream.port) as stack:
        failed = await asyncio.to_thread(stack.send, data, externals(5))
        del upstream.refuse_rcpt["p3@example.com"]
        await _next_second()  # Postfix's Date for the retry differs
        retried = await asyncio.to_thread(stack.send, data, externals(5))
    assert failed.code == 451, failed
    assert retried.code == 250, retried
    got = sorted(r for m in upstream.messages for r in m.rcpt_tos)
    assert got == externals(5), [m.data[:600] for m in upstream.messages[-2:]]


def _send_many(port: int, messages: list[tuple[bytes, list[str]]], sender: str) -> list[int]:
    """Several messages on one SMTP session (so on one milter connection), an RSET
    after an unfinished transaction between them."""
    codes = []
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        for data, rcpts in messages:
            client.mail(sender)
            client.rcpt(rcpts[0])
            client.rset()  # an abandoned transaction: Postfix sends the milter an abort
            client.mail(sender)
            for rcpt in rcpts:
                client.rcpt(rcpt)
            codes.append(client.data(data)[0])
    return codes


async def test_messages_on_one_connection_do_not_share_state(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    first = message(4, "first", extra=b"X-CCGuard-Rule: forged\r\n")
    second = message(1, "second")
    third = message(4, "third")
    rcpts = externals(4)
    async with milter_stack(postfix_dirs, upstream) as stack:
        codes = await asyncio.to_thread(
            _send_many,
            stack.postfix.smtp_port,
            [(first, rcpts), (second, ["p0@example.com"]), (third, rcpts)],
            SENDER,
        )
        await wait_until(lambda: len(upstream.messages) >= 3, "three", stack.postfix)
    got = {m.data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0]: m for m in upstream.messages}
    assert codes == [250, 250, 250]
    for subject, data, to in ((b"first", first, rcpts), (b"second", second, ["p0@example.com"])):
        _, expected = await smtp_path(data, to)
        assert without_postfix_received(got[subject].data) == expected, subject
    _, expected = await smtp_path(third, rcpts)
    assert without_postfix_received(got[b"third"].data) == expected
    assert sorted(got[b"second"].rcpt_tos) == ["p0@example.com"]


async def test_null_sender_quarantine_releases_with_the_null_sender(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    data = message(8, "bounce-like")
    async with milter_stack(postfix_dirs, upstream) as stack:
        result = await asyncio.to_thread(submit, stack.postfix.smtp_port, data, "", externals(8))
        listing = await stack.relay.store.list()
        (item,) = listing.items
        held = await stack.relay.store.get(item.id)
        assert upstream.messages == []
        admin = stack.relay.http_port("admin")
        answer = await asyncio.to_thread(
            api, admin, "POST", f"/api/quarantine/{item.id}/release", {"mode": "as-is"}
        )
        assert answer["status"] == "released", answer
        got = await delivered_one(stack)
    assert result.code == 250, result
    assert held is not None and held.mail_from == ""
    (delivered,) = upstream.messages
    assert delivered.mail_from == "<>" and sorted(delivered.rcpt_tos) == externals(8)
    assert without_postfix_received(got) == data


_TAIL = b"Subject: %s\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\nMessage-ID: <%s@example.org>\r\n"
#: Header blocks an attacker or an odd MUA writes: forged tags anywhere (any case,
#: folded, empty), every visible-recipient name in several cases, no blank after the
#: colon, folding with tabs and spaces.
_HOSTILE = [
    b"X-CCGuard-Action: pass\r\nFrom: a@example.org\r\nTo:p0@example.com,\r\n\tp1@example.com\r\n"
    b"x-ccguard-rule:\r\n folded\r\ntO: p2@example.com\r\ncc: boss@example.org, p3@example.com\r\n"
    b"X-CCGUARD-Exposure:\r\nCC: p4@example.com\r\n",
    b"From: a@example.org\r\nResent-From: d@example.org\r\nResent-Message-ID: <r@example.org>\r\n"
    b"Resent-Date: Mon, 02 Mar 2026 09:00:00 +0000\r\n"
    b"RESENT-TO: p0@example.com\r\nX-CCGuard-Action: pass\r\n"
    b"Resent-cc: desk@example.org,\r\n  p1@example.com\r\nresent-to: p2@example.com\r\n"
    b"To: team@example.org\r\nX-CCGuard-Rule: x\r\nCc: p3@example.com\r\n",
    b"From: a@example.org\r\nCc: p0@example.com\r\nCc: p1@example.com\r\nCc: p2@example.com\r\n"
    b"X-CCGuard-Action: a\r\nX-CCGuard-Action: b\r\nTo: p3@example.com\r\n",
    b"X-CCGuard-Action: a\r\nx-ccguard-action: b\r\nTo: p0@example.com, p1@example.com,"
    b" p2@example.com\r\nFrom: a@example.org\r\n",
]


@pytest.mark.parametrize("number", range(len(_HOSTILE)))
async def test_hostile_header_blocks_come_out_as_the_smtp_path_makes_them(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream, number: int
) -> None:
    name = f"hostile{number}".encode()
    data = _HOSTILE[number] + _TAIL % (name, name) + b"\r\nBody\r\n"
    rcpts = [*externals(5), "team@example.org"]
    policy = {"rules": [{"name": "hide", "min_visible_external": 3, "action": "rewrite"}]}
    async with milter_stack(postfix_dirs, upstream, policy=policy) as stack:
        result = await asyncio.to_thread(stack.send, data, rcpts)
        got = await delivered_one(stack)
    smtp_result, expected = await smtp_path(data, rcpts, policy=policy)
    assert result.code == smtp_result.code == 250, result
    assert without_postfix_received(got) == expected


async def test_thousands_of_forged_tags_are_refused_before_they_break_postfix(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    """A sender may write thousands of forged X-CCGuard-* fields (a few hundred KiB,
    within Postfix's limits). One chgheader each made Postfix's cleanup give up
    ("too many reverse jump records"), panic and be throttled: no mail accepted for a
    while. ccguard refuses such a message; hundreds are still removed as usual."""
    many = message(1, "forged-many", extra=b"X-CCGuard-A: x\r\n" * 12_000)
    some = message(1, "forged-some", extra=b"X-CCGuard-A: x\r\n" * 900)
    async with milter_stack(postfix_dirs, upstream) as stack:
        refused = await asyncio.to_thread(stack.send, many, ["p0@example.com"])
        stripped = await asyncio.to_thread(stack.send, some, ["p0@example.com"])
        got = await delivered_one(stack)
        log = stack.postfix.log_text()
    assert (refused.code, refused.text) == (
        554,
        "5.6.0 Message has too many header fields to change (forged X-CCGuard-* fields?)",
    )
    assert stripped.code == 250, stripped
    assert without_postfix_received(got) == message(1, "forged-some")
    assert "panic" not in log and "throttling" not in log
