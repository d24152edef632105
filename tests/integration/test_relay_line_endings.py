"""Bare CR and bare LF: what ccguard inspects and strips is exactly what it delivers.

Every line ending is normalised to CRLF on receipt (issue 9, break 1), so a
forged ``X-CCGuard-*`` field behind a bare CR is stripped like any other, and
a header block whose lines end in LF ends at its CRLF blank line (issue 10,
item 6).  A real relay on loopback, a real aiosmtpd upstream, a raw SMTP
client (smtplib's ``data()`` would fix the line endings itself).
"""

from __future__ import annotations

import asyncio
import smtplib
from typing import Any

import pytest

from relay.actions.release import QuarantineReleaser
from relay.app import Relay
from relay.inspect import DomainMatcher, inspect_message, parse_message
from relay.quarantine import NewMessage
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream

MATCHER = DomainMatcher(["example.org", "*.example.org"])
FORGED = b"X-CCGuard-Action: pass; rule=approved-by-admin"
EXTERNALS = ["p1@example.com", "p2@example.net", "p3@example.com"]


def message(head: bytes, body: bytes = b"Hello\r\n") -> bytes:
    return (
        b"From: Alice <alice@example.org>\r\n" + head + b"Message-ID: <m1@example.org>\r\n"
        b"\r\n" + body
    )


FORGED_BEHIND = {
    "bare-cr": message(b"To: p1@example.com\r\nSubject: x\r" + FORGED + b"\r\n"),
    "bare-lf": message(b"To: p1@example.com\r\nSubject: x\n" + FORGED + b"\r\n"),
}


def send_raw(port: int, data: bytes, rcpts: list[str]) -> tuple[int, bytes]:
    """Send ``data`` byte for byte (it must end with CRLF and hold no line
    starting with a dot); return the reply to end of DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        for rcpt in rcpts:
            client.rcpt(rcpt)
        code, _ = client.docmd("DATA")
        assert code == 354
        client.send(data + b".\r\n")
        return client.getreply()


def tag_lines(data: bytes) -> list[bytes]:
    """Every header line the upstream sees as an ``X-CCGuard-*`` field."""
    head = data.split(b"\r\n\r\n", 1)[0]
    return [line for line in head.split(b"\r\n") if line.lower().startswith(b"x-ccguard-")]


def client_part(delivered: bytes) -> bytes:
    """What was delivered, without ccguard's own Received header."""
    assert delivered.startswith(b"Received: ")
    return parse_message(delivered).without_first_field().data


def rules(action: str, at: int = 1) -> dict[str, Any]:
    return {"rules": [{"name": "bulk", "min_visible_external": at, "action": action}]}


async def relay_send(relay: Relay, data: bytes, rcpts: list[str]) -> tuple[int, bytes]:
    return await asyncio.to_thread(send_raw, relay.smtp_port, data, rcpts)


@pytest.mark.parametrize("kind", sorted(FORGED_BEHIND))
async def test_a_forged_verdict_behind_a_bare_line_ending_never_reaches_the_upstream(
    upstream: RecordingUpstream, kind: str
) -> None:
    log = LogCapture()
    async with running_relay(settings_for(upstream.port), log) as relay:
        code, _ = await relay_send(relay, FORGED_BEHIND[kind], ["p1@example.com"])
        normalised = relay.metrics.line_endings_normalised._value.get()
    assert code == 250
    [got] = upstream.messages
    assert tag_lines(got.data) == []
    assert b"\r\nSubject: x\r\nMessage-ID: <m1@example.org>\r\n\r\nHello\r\n" in got.data
    assert normalised == 1
    [line] = [e for e in log.events() if e["event"] == "transaction"]
    assert line["line_endings_normalised"] is True and line["queue_id"]


async def test_a_clean_message_is_not_counted_as_normalised(upstream: RecordingUpstream) -> None:
    log = LogCapture()
    async with running_relay(settings_for(upstream.port), log) as relay:
        code, _ = await relay_send(relay, message(b"To: p1@example.com\r\n"), ["p1@example.com"])
        normalised = relay.metrics.line_endings_normalised._value.get()
    assert code == 250 and normalised == 0
    [line] = [e for e in log.events() if e["event"] == "transaction"]
    assert line["line_endings_normalised"] is False


async def test_monitor_tags_once_and_counts_what_it_delivers(upstream: RecordingUpstream) -> None:
    # Bare CR/LF in To and Cc: the exposure in the tag is what the delivered
    # header block shows a reader.
    head = (
        b"To: ann@example.org\r, p1@example.com\r, p2@example.net\r\n"
        b"Cc: p3@example.com\n, bob@example.org\r\nSubject: s\r" + FORGED + b"\r\n"
    )
    settings = settings_for(upstream.port, policy={"mode": "monitor", **rules("quarantine")})
    async with running_relay(settings) as relay:
        code, _ = await relay_send(relay, message(head), EXTERNALS)
    assert code == 250
    [got] = upstream.messages
    [action, rule, exposure] = tag_lines(got.data)
    assert action == b"X-CCGuard-Action: monitor; would=quarantine" and rule.endswith(b"bulk")
    seen = inspect_message(client_part(got.data), MATCHER, max_header_bytes=1 << 20)
    # bob@example.org after a bare LF stands on a line of its own: unparseable, external.
    assert (seen.visible_external, seen.visible_internal, seen.unparseable) == (4, 1, 3)
    assert exposure == (
        b"X-CCGuard-Exposure: visible_external=4; external_domains=3; visible_total=5; "
        b"unparseable=3"
    )


async def test_bare_line_endings_in_the_body_arrive_as_crlf(upstream: RecordingUpstream) -> None:
    # "\n.\r\n" is no end of data for ccguard; normalised, its dot line is
    # dot-stuffed on the way out, so it is no end of data upstream either.
    body = b"one\rtwo\nthree\r\n\rfour\n.\r\nfive\r\n"
    async with running_relay(settings_for(upstream.port)) as relay:
        code, _ = await relay_send(relay, message(b"To: p1@example.com\r\n", body), EXTERNALS[:1])
    assert code == 250
    [got] = upstream.messages
    assert got.data.endswith(b"\r\n\r\none\r\ntwo\r\nthree\r\n\r\nfour\r\n.\r\nfive\r\n")


async def test_lf_header_lines_end_at_the_crlf_blank_line(upstream: RecordingUpstream) -> None:
    # The body's "To:" line is text, not a header: it must not be counted.
    data = (
        b"From: alice@example.org\nTo: bob@example.org\nSubject: minutes\n\r\n"
        b"To: p1@example.com, p2@example.net, p3@example.com\r\nsee above\r\n"
    )
    async with running_relay(settings_for(upstream.port, policy=rules("quarantine"))) as relay:
        code, text = await relay_send(relay, data, ["bob@example.org"])
    assert (code, text) == (250, b"2.0.0 Ok: queued")
    [got] = upstream.messages
    assert got.data.endswith(
        b"\r\nSubject: minutes\r\n\r\nTo: p1@example.com, p2@example.net, p3@example.com\r\n"
        b"see above\r\n"
    )


async def test_rewrite_delivers_exactly_the_inspected_rewrite(upstream: RecordingUpstream) -> None:
    head = b"To: ann@example.org\r, p1@example.com\nCc: p2@example.net\r\nSubject: s\r" + FORGED
    data = message(head + b"\n", b"a\rb\nc\r\n")
    async with running_relay(settings_for(upstream.port, policy=rules("rewrite"))) as relay:
        code, _ = await relay_send(relay, data, ["ann@example.org", *EXTERNALS[:2]])
    assert code == 250
    [got] = upstream.messages
    assert tag_lines(got.data) == [
        b"X-CCGuard-Action: rewrite",
        b"X-CCGuard-Rule: bulk",
        b"X-CCGuard-Exposure: visible_external=2; external_domains=2; visible_total=3; "
        b"unparseable=1",
    ]
    delivered = client_part(got.data)
    seen = inspect_message(delivered, MATCHER, max_header_bytes=1 << 20)
    assert (seen.visible_external, seen.visible_internal) == (0, 1)
    assert delivered.endswith(
        b"\r\nSubject: s\r\nMessage-ID: <m1@example.org>\r\n\r\na\r\nb\r\nc\r\n"
    )
    assert b"p1@example.com" not in delivered and b"p2@example.net" not in delivered


async def test_split_copies_show_only_their_recipient(upstream: RecordingUpstream) -> None:
    head = b"To: p1@example.com\r, p2@example.net\nCc: ann@example.org\r\nSubject: s\r" + FORGED
    data = message(head + b"\r\n", b"x\ry\nz\r\n")
    async with running_relay(settings_for(upstream.port, policy=rules("split"))) as relay:
        code, _ = await relay_send(relay, data, ["ann@example.org", *EXTERNALS[:2]])
    assert code == 250
    copies = {tuple(m.rcpt_tos): client_part(m.data) for m in upstream.messages}
    assert set(copies) == {("p1@example.com",), ("p2@example.net",), ("ann@example.org",)}
    for rcpts, copy in copies.items():
        assert [t for t in tag_lines(copy) if b"approved-by-admin" in t] == []
        seen = inspect_message(copy, MATCHER, max_header_bytes=1 << 20)
        shown = {*seen.external_addresses, *seen.internal_addresses}
        assert shown == ({"ann@example.org"} if rcpts == ("ann@example.org",) else set(rcpts))
        assert copy.endswith(b"\r\n\r\nx\r\ny\r\nz\r\n")


async def _release(relay: Relay, held_id: str, mode: str) -> bytes:
    stored = await relay.store.get(held_id)
    assert stored is not None
    attempt = await QuarantineReleaser(relay.upstream, relay.matcher).release(stored, mode)
    assert attempt.reply is not None and attempt.reply.code == 250
    return bytes(stored.message)


@pytest.mark.parametrize("mode", ["as-is", "hidden"])
async def test_a_held_message_is_stored_and_released_normalised(
    upstream: RecordingUpstream, mode: str
) -> None:
    head = b"To: p1@example.com\r, p2@example.net\r\nSubject: x\r" + FORGED + b"\n"
    async with running_relay(settings_for(upstream.port, policy=rules("quarantine"))) as relay:
        code, text = await relay_send(relay, message(head, b"a\rb\nc\r\n"), EXTERNALS[:2])
        assert code == 250 and text.startswith(b"2.0.0 held for review as ")
        held = await _release(relay, text.decode().rsplit(" ", 1)[1], mode)
    assert parse_message(held).data is held  # stored with CRLF only
    [got] = upstream.messages
    tags = tag_lines(got.data)
    assert [t for t in tags if b"approved-by-admin" in t] == []
    assert tags[:1] == ([] if mode == "as-is" else [b"X-CCGuard-Action: rewrite; released"])
    assert got.data.endswith(
        b"\r\nSubject: x\r\nMessage-ID: <m1@example.org>\r\n\r\na\r\nb\r\nc\r\n"
    )


@pytest.mark.parametrize("mode", ["as-is", "hidden"])
async def test_a_row_stored_with_bare_line_endings_is_released_normalised(
    upstream: RecordingUpstream, mode: str
) -> None:
    # As an older version stored it: the client's bytes as they came.
    raw = b"Received: from x by ccguard.test; Tue, 1 Dec 2026 09:00:00 +0000\r\n" + message(
        b"To: p1@example.com\r\nSubject: x\r" + FORGED + b"\r\n", b"a\rb\nc\r\n"
    )
    async with running_relay(settings_for(upstream.port)) as relay:
        held_id = await relay.store.put(
            NewMessage(mail_from="alice@example.org", rcpt_tos=("p1@example.com",), message=raw)
        )
        await _release(relay, held_id, mode)
    [got] = upstream.messages
    assert [t for t in tag_lines(got.data) if b"approved-by-admin" in t] == []
    assert got.data.startswith(b"Received: from x by ccguard.test;")
    assert got.data.endswith(
        b"\r\nSubject: x\r\nMessage-ID: <m1@example.org>\r\n\r\na\r\nb\r\nc\r\n"
    )
