"""[limits] soft/hard_error_limit and junk_command_limit: a client that keeps erring
is slowed down, then told 421 and disconnected (what never counts:
test_relay_error_limits_exempt.py).

Real parts only: a whole ccguard on 127.0.0.1, a recording aiosmtpd upstream,
raw sockets or smtplib as the client.
"""

from __future__ import annotations

import asyncio
import smtplib
import socket
import time
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from relay.app import Relay
from tests.helpers.error_limits import (
    EHLO,
    MAIL,
    MESSAGE,
    NO_SLEEP,
    NO_SUCH_USER,
    RCPT_BOB,
    RCPT_NOBODY,
    SHUTTING_DOWN,
    TOO_MANY_ERRORS,
    metric,
    talk,
    until_closed,
)
from tests.helpers.hangup import read_reply
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.smtp_auth import OUTSIDE, PASSWORD, tls_smtp
from tests.helpers.tls import Pki
from tests.helpers.upstream import RecordingUpstream, no_upstream_connection_left_over
from tests.helpers.waiting import wait_until


async def session_ends(relay: Relay) -> None:
    await wait_until(lambda: len(relay.front.sessions) == 0, "the session is still open")


def disconnects(log: LogCapture) -> list[dict[str, Any]]:
    return [e for e in log.events() if e.get("event") == "client disconnected"]


def hangups(relay: Relay) -> float:
    return sum(
        metric(relay, "ccguard_smtp_client_hangups_total", stage=stage)
        for stage in ("none", "mail", "rcpt", "data")
    )


async def test_the_hard_limit_of_unknown_commands_gets_421_a_log_line_and_a_metric(
    upstream: RecordingUpstream,
) -> None:
    log = LogCapture()
    settings = settings_for(upstream.port, limits={"hard_error_limit": 3, **NO_SLEEP})
    async with running_relay(settings, log) as relay:
        got = await asyncio.to_thread(talk, relay.smtp_port, [EHLO, b"FOO", b"BAR", b"BAZ"])
        await session_ends(relay)
        count = metric(relay, "ccguard_smtp_clients_disconnected_total", reason="too_many_errors")
        hung_up = hangups(relay)
        said_421 = metric(relay, "ccguard_smtp_replies_total", stage="helo", code_class="4xx")
    assert got[1:] == [
        b'500 Error: command "FOO" not recognized\r\n',
        b'500 Error: command "BAR" not recognized\r\n',
        b'500 Error: command "BAZ" not recognized\r\n' + TOO_MANY_ERRORS,
    ]
    assert [(e["level"], e["client_ip"], e["reason"]) for e in disconnects(log)] == [
        ("warning", "127.0.0.1", "too_many_errors")
    ]
    assert "queue_id" not in disconnects(log)[0]  # no transaction was open
    assert count == 1
    assert said_421 == 1  # the 421 is a reply like any other (stage: the last command's)
    assert hung_up == 0  # ccguard closed it: not a client hang-up


async def test_aiosmtpds_own_fifth_unknown_command_limit_says_ccguards_421(
    upstream: RecordingUpstream,
) -> None:
    # aiosmtpd closes after the fifth unknown command of a connection (its
    # BOGUS_LIMIT, with "502 5.5.1 ... goodbye."): with the default limits that comes
    # before hard_error_limit, and it is the same disconnect to the client.
    log = LogCapture()
    async with running_relay(settings_for(upstream.port), log) as relay:
        unknown = [b"XYZZY%d" % n for n in range(5)]
        got = await asyncio.to_thread(talk, relay.smtp_port, [EHLO, *unknown])
        await session_ends(relay)
        count = metric(relay, "ccguard_smtp_clients_disconnected_total", reason="too_many_errors")
        hung_up = hangups(relay)
    assert [reply[:4] for reply in got[1:-1]] == [b"500 "] * 4
    assert got[-1] == TOO_MANY_ERRORS
    assert [e["reason"] for e in disconnects(log)] == ["too_many_errors"]
    assert count == 1 and hung_up == 0


async def test_junk_commands_over_their_limit_count_as_errors(upstream: RecordingUpstream) -> None:
    limits = {"junk_command_limit": 3, "hard_error_limit": 2, **NO_SLEEP}
    async with running_relay(settings_for(upstream.port, limits=limits)) as relay:
        junk = [b"NOOP", b"RSET", b"VRFY <bob@example.com>", b"HELP", b"NOOP"]
        got = await asyncio.to_thread(talk, relay.smtp_port, [EHLO, *junk])
        await session_ends(relay)
        count = metric(relay, "ccguard_smtp_clients_disconnected_total", reason="too_many_errors")
    # Three within the limit; HELP is the first over it (one error), the NOOP after
    # it the second: its 250 is sent, then the 421.
    assert [reply[:4] for reply in got[1:5]] == [b"250 ", b"250 ", b"252 ", b"250 "]
    assert got[5] == b"250 OK\r\n" + TOO_MANY_ERRORS
    assert count == 1


async def test_error_replies_over_the_soft_limit_wait_error_sleep(
    upstream: RecordingUpstream,
) -> None:
    sleep = 0.25
    limits = {"soft_error_limit": 2, "error_sleep": sleep, "hard_error_limit": 0}

    def timed(port: int) -> tuple[list[tuple[bytes, float]], bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            read_reply(sock)
            sock.sendall(EHLO + b"\r\n")
            read_reply(sock)
            replies = []
            for _ in range(4):  # RCPT before MAIL: 503, an error each
                started = time.monotonic()
                sock.sendall(RCPT_BOB + b"\r\n")
                replies.append((read_reply(sock), time.monotonic() - started))
            sock.sendall(b"NOOP\r\n")
            return replies, read_reply(sock)

    async with running_relay(settings_for(upstream.port, limits=limits)) as relay:
        replies, noop = await asyncio.to_thread(timed, relay.smtp_port)
    assert [reply for reply, _ in replies] == [b"503 Error: need MAIL command\r\n"] * 4
    # The third and fourth errors are over the soft limit (a little slack for clock
    # resolution; no upper bound: a loaded machine may be slower, never faster).
    assert [seconds >= sleep * 0.8 for _, seconds in replies[2:]] == [True, True]
    assert noop == b"250 OK\r\n"  # hard_error_limit = 0: never disconnected


async def _sleeping_client(
    relay: Relay, errors_before: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client whose second error reply ccguard holds back (error_sleep), once it does."""
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.smtp_port)
    await reader.readline()
    for line in (EHLO, RCPT_BOB, RCPT_BOB):
        writer.write(line + b"\r\n")
    # The reply is counted just before its wait begins, in the same step of the loop.
    await wait_until(
        lambda: (
            metric(relay, "ccguard_smtp_replies_total", stage="rcpt", code_class="5xx")
            == errors_before + 2
        ),
        "ccguard never got to the second error",
    )
    return reader, writer


async def test_the_error_sleep_ends_with_a_hang_up_and_with_shutdown(
    upstream: RecordingUpstream,
) -> None:
    limits = {"soft_error_limit": 1, "error_sleep": 30, "hard_error_limit": 0}
    log = LogCapture()
    async with running_relay(settings_for(upstream.port, limits=limits), log) as relay:
        _, gone = await _sleeping_client(relay, 0)
        gone.transport.abort()  # a reset, in the middle of the 30 s
        await wait_until(lambda: len(relay.front.sessions) == 0, "still asleep", timeout=10)
        hung_up = hangups(relay)
        reader, writer = await _sleeping_client(relay, 2)
        started = time.monotonic()
    stop_seconds = time.monotonic() - started  # shutdown, with the second one asleep
    told = await reader.read()
    writer.close()
    assert hung_up == 1
    assert stop_seconds < 10  # not the 30 s of the sleep
    # The first error was answered; the second reply was still held back.
    assert told.count(b"503 Error: need MAIL command\r\n") == 1
    assert told.endswith(b"250 HELP\r\n503 Error: need MAIL command\r\n" + SHUTTING_DOWN)
    assert "Traceback" not in log.text


async def test_each_accepted_message_starts_the_count_again_over_200_messages(
    upstream: RecordingUpstream,
) -> None:
    # Per message: two RCPT syntax errors (errors: an upstream's refusal would not
    # count) and NOOP + RSET (junk): any count carried over from the message before
    # would reach the limits at the second one, at its first syntax error.
    limits = {"hard_error_limit": 3, "junk_command_limit": 2, **NO_SLEEP}

    def deliver(port: int, count: int) -> list[tuple[int, ...]]:
        outcomes = []
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("app.example.org")
            for _ in range(count):
                replies = (
                    client.mail("alice@example.org")[0],
                    client.docmd("RCPT TO:")[0],
                    client.rcpt("bob@example.com")[0],
                    client.docmd("RCPT TO:")[0],
                    client.data(MESSAGE)[0],
                    client.noop()[0],
                    client.rset()[0],
                )
                outcomes.append(replies)
        return outcomes

    async with running_relay(settings_for(upstream.port, limits=limits)) as relay:
        outcomes = await asyncio.to_thread(deliver, relay.smtp_port, 200)
        count = metric(relay, "ccguard_smtp_clients_disconnected_total", reason="too_many_errors")
    assert set(outcomes) == {(250, 501, 250, 501, 250, 250, 250)}
    assert len(outcomes) == 200 and len(upstream.messages) == 200
    assert count == 0


def send(port: int) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        return client.sendmail("carol@example.org", ["dave@example.com"], MESSAGE)


async def test_a_client_cut_off_mid_transaction_leaves_the_upstream_in_step(
    upstream: RecordingUpstream,
) -> None:
    # MAIL relayed, the only recipient refused by the upstream (not an error: the
    # upstream's answer), then two unknown commands: the transaction holds no
    # recipient, so the second one cuts the client off there and then.
    upstream.refuse_rcpt = {"nobody@example.com": NO_SUCH_USER}
    log = LogCapture()
    settings = settings_for(upstream.port, limits={"hard_error_limit": 2, **NO_SLEEP})
    async with running_relay(settings, log) as relay:
        lines = [EHLO, MAIL, RCPT_NOBODY, b"FOO", b"BAR"]
        got = await asyncio.to_thread(talk, relay.smtp_port, lines)
        await session_ends(relay)
        await no_upstream_connection_left_over(relay, upstream)
        rsets = upstream.rset_commands
        refused = await asyncio.to_thread(send, relay.smtp_port)
        await upstream.wait_for(1)
        hung_up = hangups(relay)
    assert got[2] == NO_SUCH_USER.encode() + b"\r\n"
    assert got[4] == b'500 Error: command "BAR" not recognized\r\n' + TOO_MANY_ERRORS
    assert rsets == 1  # the upstream transaction was RSET ...
    assert upstream.connections == 1  # ... and its connection served the next client
    assert refused == {}
    assert [(m.mail_from, m.rcpt_tos) for m in upstream.messages] == [
        ("carol@example.org", ["dave@example.com"])
    ]
    (gone,) = disconnects(log)
    ended = [e for e in log.events() if e.get("event") == "transaction"]
    assert gone["queue_id"] == ended[0]["queue_id"]
    assert (ended[0]["outcome"], ended[0]["recipients"]) == ("too many errors", 0)
    assert hung_up == 0


async def test_a_transaction_holding_a_recipient_is_cut_only_when_it_ends(
    upstream: RecordingUpstream,
) -> None:
    # The limit is reached by RCPT syntax errors after bob was accepted: the client
    # is not cut in the middle of its transaction, but after the RSET that ends it.
    log = LogCapture()
    settings = settings_for(upstream.port, limits={"hard_error_limit": 2, **NO_SLEEP})
    async with running_relay(settings, log) as relay:
        lines = [EHLO, MAIL, RCPT_BOB, b"RCPT TO:", b"RCPT TO:", b"RCPT TO:", b"RSET"]
        got = await asyncio.to_thread(talk, relay.smtp_port, lines)
        await session_ends(relay)
        await no_upstream_connection_left_over(relay, upstream)
    assert [reply[:4] for reply in got[3:6]] == [b"501 "] * 3
    assert got[6] == b"250 2.0.0 OK\r\n" + TOO_MANY_ERRORS
    assert upstream.rset_commands == 1
    ended = [e for e in log.events() if e.get("event") == "transaction"]
    assert [(e["outcome"], e["recipients"]) for e in ended] == [("no message", 1)]


async def test_commands_pipelined_after_the_421_are_neither_run_nor_answered(
    upstream: RecordingUpstream,
) -> None:
    settings = settings_for(upstream.port, limits={"hard_error_limit": 2, **NO_SLEEP})

    def pipeline(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            read_reply(sock)
            for line in (EHLO, MAIL):
                sock.sendall(line + b"\r\n")
                read_reply(sock)
            # One segment: two errors, then commands ccguard has read when it says 421.
            after = [b"RCPT TO:<carol@example.com>", b"NOOP", b"FOO", b"QUIT"]
            sock.sendall(b"\r\n".join([b"RCPT TO:", b"RCPT TO:", *after, b""]))
            return until_closed(sock)

    async with running_relay(settings) as relay:
        got = await asyncio.to_thread(pipeline, relay.smtp_port)
        await session_ends(relay)
        await no_upstream_connection_left_over(relay, upstream)
    syntax = b"501 Syntax: RCPT TO: <address> [SP <mail-parameters>]\r\n"
    assert got == syntax * 2 + TOO_MANY_ERRORS
    assert upstream.rcpts_answered == []  # carol's never went up
    assert upstream.rset_commands == 1


async def test_a_client_going_on_after_its_upstream_failed_at_rcpt_is_cut_off(
    upstream: RecordingUpstream,
) -> None:
    # bob accepted, then the upstream never answers carol's RCPT: 451 and the upstream
    # transaction is gone.  Client RCPTs after that (451 again) and MAILs (503) count;
    # the dead transaction holds no recipient, so the limit cuts at once.
    never = asyncio.Event()

    async def hang(address: str) -> None:
        if address.startswith("carol"):
            await never.wait()

    upstream.rcpt_gate = hang
    limits = {"hard_error_limit": 3, **NO_SLEEP}
    settings = settings_for(upstream.port, upstream={"timeout": 1}, limits=limits)
    rcpt_carol = b"RCPT TO:<carol@example.com>"
    lines = [EHLO, MAIL, RCPT_BOB, rcpt_carol, rcpt_carol, MAIL, rcpt_carol]
    try:
        async with running_relay(settings) as relay:
            got = await asyncio.to_thread(talk, relay.smtp_port, lines)
            await session_ends(relay)
    finally:
        never.set()
    down = b"451 4.4.1 Upstream server unavailable, try again later\r\n"
    assert got[3].startswith(b"451 4.4.2 ")  # the upstream's timeout: not counted
    assert got[4] == down
    assert got[5].startswith(b"503 ")
    assert got[6] == down + TOO_MANY_ERRORS


async def test_a_non_ascii_sender_without_smtputf8_counts(upstream: RecordingUpstream) -> None:
    settings = settings_for(upstream.port, limits={"hard_error_limit": 2, **NO_SLEEP})
    mail = "MAIL FROM:<j\u00fcrgen@example.org>".encode()
    async with running_relay(settings) as relay:
        got = await asyncio.to_thread(talk, relay.smtp_port, [EHLO, mail, mail])
    needs = b"553 5.6.7 "
    assert got[1].startswith(needs) and got[2].startswith(needs)
    assert got[2].endswith(TOO_MANY_ERRORS)
    assert upstream.mail_commands == 0


async def test_auth_throttled_454_counts(
    upstream: RecordingUpstream, pki: Pki, users_file: Path
) -> None:
    # Three 535s, then the throttle's 454 (a 4xx, yet the client's doing): the fourth.
    smtp = tls_smtp(pki, users_file, allowed_networks=OUTSIDE)
    limits = {"hard_error_limit": 4, **NO_SLEEP}
    async with running_relay(settings_for(upstream.port, smtp=smtp, limits=limits)) as relay:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1", port=relay.smtp_port, timeout=10, validate_certs=False
        )
        await client.connect()
        await client.ehlo()
        codes = []
        for password in ["wrong-password"] * 3 + [PASSWORD]:
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as err:
                await client.auth_plain("app1", password)
            codes.append(err.value.code)
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await client.noop()
        count = metric(relay, "ccguard_smtp_clients_disconnected_total", reason="too_many_errors")
        client.close()
    assert codes == [535, 535, 535, 454]
    assert count == 1
