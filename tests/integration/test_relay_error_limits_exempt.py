"""[limits] error counting, what never counts: the upstream's answers, verdicts on the
content, ccguard's own trouble, 452 4.5.3 within recipient_overshoot_limit.  A
client whose messages are accepted or rejected for their content is never slowed
or cut off, nor one the upstream refuses.

Real parts only: a whole ccguard on 127.0.0.1, a recording aiosmtpd upstream,
raw sockets or smtplib as the client.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time

import pytest

from tests.helpers.error_limits import (
    EHLO,
    MAIL,
    MESSAGE,
    NO_SLEEP,
    NO_SUCH_USER,
    RCPT_BOB,
    RCPT_NOBODY,
    TOO_MANY_ERRORS,
    metric,
    talk,
    until_closed,
)
from tests.helpers.hangup import read_reply
from tests.helpers.process import free_port
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream


async def test_replies_that_are_not_the_clients_fault_never_count() -> None:
    # The upstream is down: every MAIL gets 451 4.4.1, and only the unknown
    # commands count (two of them reach hard_error_limit = 2).
    settings = settings_for(free_port(), limits={"hard_error_limit": 2, **NO_SLEEP})
    async with running_relay(settings) as relay:
        lines = [EHLO, MAIL, MAIL, MAIL, MAIL, b"FOO", MAIL, b"BAR"]
        got = await asyncio.to_thread(talk, relay.smtp_port, lines)
    down = b"451 4.4.1 Upstream server unavailable, try again later\r\n"
    assert got[1:5] == [down] * 4 and got[6] == down
    assert got[5].startswith(b"500 ")
    assert got[7] == b'500 Error: command "BAR" not recognized\r\n' + TOO_MANY_ERRORS


async def test_only_the_first_data_after_every_recipient_was_refused_is_let_off(
    upstream: RecordingUpstream,
) -> None:
    # A client may send DATA before it read the refusals of all its recipients: that
    # first 503 of a transaction is free.  ccguard offers no PIPELINING, so a
    # second one in the same transaction counts.
    upstream.refuse_rcpt = {"nobody@example.com": NO_SUCH_USER}
    settings = settings_for(upstream.port, limits={"hard_error_limit": 2, **NO_SLEEP})
    once = [MAIL, RCPT_NOBODY, b"DATA", b"DATA"]
    async with running_relay(settings) as relay:
        got = await asyncio.to_thread(talk, relay.smtp_port, [EHLO, *once, b"RSET", *once])
    need_rcpt = b"503 Error: need RCPT command\r\n"
    assert got[3:5] == [need_rcpt] * 2  # the first free, the second one error
    assert got[5].startswith(b"250 ")  # RSET: a new transaction, a new first DATA
    assert got[8] == need_rcpt
    assert got[9] == need_rcpt + TOO_MANY_ERRORS  # the second error


async def test_upstream_4xx_and_too_many_recipients_do_not_count(
    upstream: RecordingUpstream,
) -> None:
    upstream.refuse_rcpt = {"grey@example.com": "450 4.2.0 Greylisted, try again later"}
    limits = {"hard_error_limit": 2, **NO_SLEEP}
    settings = settings_for(upstream.port, smtp={"max_recipients": 2}, limits=limits)

    def deliver(port: int) -> tuple[list[int], tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("app.example.org")
            client.mail("alice@example.org")
            rcpts = ["bob@example.com", "grey@example.com", "grey@example.com"]
            rcpts += ["carol@example.com", "dave@example.com", "erin@example.com"]
            codes = [client.rcpt(rcpt)[0] for rcpt in rcpts]
            return codes, client.data(MESSAGE)

    async with running_relay(settings) as relay:
        codes, data = await asyncio.to_thread(deliver, relay.smtp_port)
    assert codes == [250, 450, 450, 250, 452, 452]
    assert data[0] == 250
    assert upstream.messages[0].rcpt_tos == ["bob@example.com", "carol@example.com"]


# -- a legitimate client is never slowed or cut off (the defaults: soft 10, 1 s, hard 20)

REJECT_MANY = {"rules": [{"name": "refuse-many", "min_visible_external": 3, "action": "reject"}]}
MANY_VISIBLE = (
    b"From: alice@example.org\r\nTo: "
    + b", ".join(b"p%d@example.com" % n for n in range(4))
    + b"\r\nSubject: hi\r\n\r\nbody\r\n"
)


async def test_25_messages_rejected_for_their_content_are_never_slowed_or_cut_off(
    upstream: RecordingUpstream,
) -> None:
    # A verdict on the content is not the client's protocol fault: 25 policy rejects
    # in a row on one connection, with the default limits and error_sleep = 1 s.
    settings = settings_for(upstream.port, policy=REJECT_MANY, limits={"error_sleep": 1.0})

    def burst(port: int) -> tuple[list[int], int, float]:
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("app.example.org")
            codes = []
            for _ in range(25):
                with pytest.raises(smtplib.SMTPDataError) as err:
                    client.sendmail("alice@example.org", ["p0@example.com"], MANY_VISIBLE)
                codes.append(err.value.smtp_code)
            noop = client.noop()[0]
        return codes, noop, time.monotonic() - started

    async with running_relay(settings) as relay:
        codes, noop, seconds = await asyncio.to_thread(burst, relay.smtp_port)
        count = metric(relay, "ccguard_smtp_clients_disconnected_total", reason="too_many_errors")
    assert codes == [550] * 25 and noop == 250  # no 421: still connected
    assert count == 0
    assert seconds < 5  # 15 replies over the soft limit would have slept 15 s


async def test_recipients_the_upstream_refuses_never_count(upstream: RecordingUpstream) -> None:
    # 21 stale addresses and 4 valid ones in one message: the upstream's 550s are
    # passed on, and the message goes to the 4.
    gone = [f"gone{n}@example.com" for n in range(21)]
    upstream.refuse_rcpt = dict.fromkeys(gone, NO_SUCH_USER)
    valid = [f"p{n}@example.com" for n in range(4)]
    settings = settings_for(upstream.port, limits={"error_sleep": 1.0})

    def deliver(port: int) -> tuple[dict[str, tuple[int, bytes]], int, float]:
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            refused = client.sendmail("alice@example.org", gone + valid, MESSAGE)
            noop = client.noop()[0]
        return refused, noop, time.monotonic() - started

    async with running_relay(settings) as relay:
        refused, noop, seconds = await asyncio.to_thread(deliver, relay.smtp_port)
        count = metric(relay, "ccguard_smtp_clients_disconnected_total", reason="too_many_errors")
    assert sorted(refused) == sorted(gone) and {c for c, _ in refused.values()} == {550}
    assert [m.rcpt_tos for m in upstream.messages] == [valid]
    assert noop == 250 and count == 0
    assert seconds < 5  # 11 refusals over the soft limit would have slept 11 s


async def test_an_upstream_5xx_at_mail_does_not_count(upstream: RecordingUpstream) -> None:
    upstream.refuse_mail = {"alice@example.org": "550 5.7.1 Sender blocked upstream"}
    settings = settings_for(upstream.port, limits={"hard_error_limit": 2, **NO_SLEEP})
    async with running_relay(settings) as relay:
        got = await asyncio.to_thread(talk, relay.smtp_port, [EHLO, MAIL, MAIL, MAIL, b"QUIT"])
    assert got[1:4] == [b"550 5.7.1 Sender blocked upstream\r\n"] * 3
    assert got[4].startswith(b"221 ")  # not a 421


async def test_too_many_recipients_count_only_beyond_the_overshoot_of_1000(
    upstream: RecordingUpstream,
) -> None:
    # max_recipients = 1: every RCPT after the first gets 452 4.5.3, the normal
    # exchange; Postfix counts those only beyond smtpd_recipient_overshoot_limit.
    settings = settings_for(upstream.port, smtp={"max_recipients": 1}, limits=NO_SLEEP)

    def rcpts(port: int, extra: int) -> tuple[list[int], bytes]:
        lines = [EHLO, MAIL, RCPT_BOB] + [b"RCPT TO:<p%d@example.com>" % n for n in range(extra)]
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            read_reply(sock)
            got = []
            for line in lines:
                sock.sendall(line + b"\r\n")
                got.append(int(read_reply(sock)[:3]))
            sock.sendall(b"RSET\r\nQUIT\r\n")
            return got, until_closed(sock)

    async with running_relay(settings) as relay:
        within, within_end = await asyncio.to_thread(rcpts, relay.smtp_port, 1000)
        beyond, beyond_end = await asyncio.to_thread(rcpts, relay.smtp_port, 1099)
    assert within == [250, 250, 250] + [452] * 1000  # EHLO, MAIL, bob, then no 421
    assert beyond == [250, 250, 250] + [452] * 1099
    assert within_end.endswith(b"221 Bye\r\n")
    # 99 beyond the overshoot: errors, over hard_error_limit; the transaction held
    # bob, so the cut waits for the RSET that ends it.
    assert beyond_end == b"250 2.0.0 OK\r\n" + TOO_MANY_ERRORS
