"""Access control, size/recipient/line limits, timeouts and internal errors of the front."""

from __future__ import annotations

import asyncio
import smtplib
import socket

import pytest

from relay.app import Relay
from relay.envelope import Envelope
from relay.inspect import ParsedMessage
from relay.policy.verdict import Verdict
from tests.helpers.hangup import hang_up, read_reply, talk_up_to
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import Gate, wait_until

MESSAGE = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: hi\r\n\r\nbody\r\n"


def send(
    port: int,
    message: bytes = MESSAGE,
    rcpts: tuple[str, ...] = ("bob@example.com",),
    mail_options: tuple[str, ...] = (),
) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.sendmail("alice@example.org", list(rcpts), message, mail_options=list(mail_options))


async def test_client_outside_allowed_networks_is_refused_at_connect(
    upstream: RecordingUpstream,
) -> None:
    settings = settings_for(upstream.port, smtp={"allowed_networks": ["192.0.2.0/24"]})
    async with running_relay(settings) as relay:
        with pytest.raises(smtplib.SMTPConnectError) as err:
            await asyncio.to_thread(send, relay.smtp_port)
    assert err.value.smtp_code == 554
    assert err.value.smtp_error == b"5.7.1 Access denied: client network not allowed to relay"
    assert upstream.messages == [] and upstream.connections == 0


async def test_size_announced_too_big_is_refused_at_mail(upstream: RecordingUpstream) -> None:
    settings = settings_for(upstream.port, smtp={"max_message_size": 1000})
    async with running_relay(settings) as relay:
        with pytest.raises(smtplib.SMTPSenderRefused) as err:
            await asyncio.to_thread(
                send, relay.smtp_port, MESSAGE, ("bob@example.com",), ("SIZE=5000",)
            )
    assert err.value.smtp_code == 552
    assert err.value.smtp_error == b"5.3.4 Message size exceeds fixed maximum message size"
    assert upstream.messages == []


async def test_oversized_data_is_refused_and_connection_stays_usable(
    upstream: RecordingUpstream,
) -> None:
    settings = settings_for(upstream.port, smtp={"max_message_size": 1000})

    def talk(port: int) -> tuple[tuple[int, bytes], dict[str, object]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example.org")
            client.mail("alice@example.org")
            client.rcpt("bob@example.com")
            too_big = client.data(MESSAGE + (b"x" * 70 + b"\r\n") * 30)
            ok = client.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)
            return too_big, ok

    async with running_relay(settings) as relay:
        too_big, ok = await asyncio.to_thread(talk, relay.smtp_port)
    assert too_big == (552, b"5.3.4 Message size exceeds fixed maximum message size")
    assert ok == {}
    assert len(upstream.messages) == 1 and upstream.messages[0].data.endswith(MESSAGE)


async def test_too_many_recipients(upstream: RecordingUpstream) -> None:
    settings = settings_for(upstream.port, smtp={"max_recipients": 2})

    def talk(port: int) -> list[tuple[int, bytes]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example.org")
            client.mail("alice@example.org")
            replies = [client.rcpt(f"user{i}@example.com") for i in range(3)]
            replies.append(client.data(MESSAGE))
            return replies

    async with running_relay(settings) as relay:
        replies = await asyncio.to_thread(talk, relay.smtp_port)
    assert [r[0] for r in replies[:2]] == [250, 250]
    assert replies[2] == (452, b"4.5.3 Too many recipients")
    assert replies[3][0] == 250
    assert upstream.messages[0].rcpt_tos == ["user0@example.com", "user1@example.com"]


async def test_overlong_line_is_refused_without_crash(upstream: RecordingUpstream) -> None:
    def talk(port: int) -> tuple[tuple[int, bytes], dict[str, object]]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example.org")
            client.mail("alice@example.org")
            client.rcpt("bob@example.com")
            bad = client.data(MESSAGE + b"y" * 5000 + b"\r\n")
            return bad, client.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)

    async with running_relay(settings_for(upstream.port)) as relay:
        bad, ok = await asyncio.to_thread(talk, relay.smtp_port)
    assert bad[0] == 500 and bad[1].startswith(b"5.5.2 Line too long")
    assert ok == {} and len(upstream.messages) == 1


async def test_ehlo_advertises_size_8bitmime_smtputf8(upstream: RecordingUpstream) -> None:
    settings = settings_for(upstream.port, smtp={"max_message_size": 123456})

    def ehlo(port: int) -> bytes:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            return client.ehlo("client.example.org")[1]

    async with running_relay(settings) as relay:
        text = await asyncio.to_thread(ehlo, relay.smtp_port)
    lines = text.split(b"\n")
    assert b"SIZE 123456" in lines and b"8BITMIME" in lines and b"SMTPUTF8" in lines


def raw_dialogue(port: int, lines: list[bytes], wait: float) -> bytes:
    """Send ``lines`` one reply at a time, then return whatever comes until close."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        read_reply(sock)
        for line in lines:
            sock.sendall(line + b"\r\n")
            read_reply(sock)
        sock.settimeout(wait)
        chunks = b""
        while chunk := sock.recv(1024):
            chunks += chunk
        return chunks


async def test_transaction_timeout_closes_with_421(upstream: RecordingUpstream) -> None:
    settings = settings_for(upstream.port, smtp={"transaction_timeout": 0.5})
    async with running_relay(settings) as relay:
        tail = await asyncio.to_thread(
            raw_dialogue,
            relay.smtp_port,
            [b"EHLO client.example.org", b"MAIL FROM:<alice@example.org>"],
            5,
        )
    assert tail == b"421 4.4.2 Transaction took too long, closing connection\r\n"
    assert upstream.messages == []


async def test_idle_timeout_closes_with_421(upstream: RecordingUpstream) -> None:
    # error_sleep must be shorter than idle_timeout (refused at load otherwise).
    limits = {"error_sleep": 0.1}
    settings = settings_for(upstream.port, smtp={"idle_timeout": 0.5}, limits=limits)
    async with running_relay(settings) as relay:
        tail = await asyncio.to_thread(raw_dialogue, relay.smtp_port, [b"EHLO x.example.org"], 5)
    assert tail == b"421 4.4.2 Idle too long, closing connection\r\n"


class ExplodingDecider:
    async def decide(self, envelope: Envelope, message: ParsedMessage) -> Verdict:
        raise RuntimeError("inspection bug")


async def test_unexpected_error_is_451_with_reference_and_logged(
    upstream: RecordingUpstream,
) -> None:
    log = LogCapture()
    async with running_relay(settings_for(upstream.port), log) as relay:
        relay.front.decider = ExplodingDecider()
        with pytest.raises(smtplib.SMTPDataError) as err:
            await asyncio.to_thread(send, relay.smtp_port)
    assert err.value.smtp_code == 451
    text = err.value.smtp_error.decode()
    assert text.startswith("4.3.0 Temporary local problem, try again later (ref ")
    ref = text.rsplit("ref ", 1)[1].rstrip(")")
    errors = [e for e in log.events() if e["event"] == "internal error"]
    assert errors and errors[0]["queue_id"] == ref and "RuntimeError" in errors[0]["exception"]
    assert upstream.messages == []


def talk_refused(port: int) -> list[tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        replies = [client.rcpt("bob@example.com"), client.rcpt("nobody@example.com")]
        return [*replies, client.data(MESSAGE)]


async def test_client_hanging_up_after_data_still_gets_message_delivered_once(
    upstream: RecordingUpstream,
) -> None:
    gate = Gate()  # the upstream answers DATA only once the client has hung up
    upstream.data_gate = gate.hold
    head = [
        b"EHLO client.example.org",
        b"MAIL FROM:<alice@example.org>",
        b"RCPT TO:<bob@example.com>",
        b"DATA",
    ]
    async with running_relay(settings_for(upstream.port)) as relay:
        await asyncio.to_thread(hang_up, relay.smtp_port, head, MESSAGE + b".\r\n", rst=False)
        await wait_until(lambda: gate.waiting == 1, "the message is with the upstream")
        gate.open()
        await upstream.wait_for(1, timeout=30)
        await asyncio.to_thread(send, relay.smtp_port)
        await upstream.wait_for(2)
    assert [m.data.endswith(MESSAGE) for m in upstream.messages] == [True, True]


def _sessions(relay: Relay) -> float:
    return relay.metrics.registry.get_sample_value("ccguard_smtp_sessions_active") or 0.0


async def test_client_hanging_up_mid_rcpt_never_desynchronises_the_pool(
    upstream: RecordingUpstream,
) -> None:
    gate = Gate(first=1)  # carol's RCPT is answered only after the client hung up
    upstream.rcpt_gate = gate.hold
    upstream.refuse_rcpt["nobody@example.com"] = "550 5.1.1 no such user"
    head = [b"EHLO client.example.org", b"MAIL FROM:<alice@example.org>"]
    async with running_relay(settings_for(upstream.port)) as relay:
        sock = await asyncio.to_thread(
            talk_up_to, relay.smtp_port, head, b"RCPT TO:<carol@example.com>\r\n"
        )
        await wait_until(lambda: gate.waiting == 1, "carol's RCPT is with the upstream")
        sock.close()  # the client hangs up while the upstream still owes carol's answer
        await wait_until(lambda: _sessions(relay) == 0, "ccguard saw the client go")
        # Carol's late 250 goes out before the next client comes, unless ccguard
        # has dropped that upstream connection already (then nothing is owed).
        gate.open()
        await wait_until(lambda: gate.waiting == 0, "carol's RCPT answered or abandoned")
        replies = await asyncio.to_thread(talk_refused, relay.smtp_port)
    assert [code for code, _ in replies] == [250, 550, 250]
    assert replies[1] == (550, b"5.1.1 no such user")
    (got,) = upstream.messages
    assert got.rcpt_tos == ["bob@example.com"]


async def test_non_ascii_address_without_smtputf8_is_refused_clearly(
    upstream: RecordingUpstream,
) -> None:
    def talk(port: int) -> list[tuple[int, bytes]]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            read_reply(sock)
            replies = []
            for line in [
                "EHLO client.example.org",
                "MAIL FROM:<zoë@example.org>",
                "MAIL FROM:<alice@example.org>",
                "RCPT TO:<zoë@example.com>",
                "RCPT TO:<bob@example.com>",
            ]:
                sock.sendall(line.encode() + b"\r\n")
                reply = read_reply(sock).rstrip(b"\r\n").rsplit(b"\r\n", 1)[-1]
                replies.append((int(reply[:3]), reply[4:]))
            return replies

    async with running_relay(settings_for(upstream.port)) as relay:
        replies = await asyncio.to_thread(talk, relay.smtp_port)
    refusal = (553, b"5.6.7 Non-ASCII address requires MAIL FROM with SMTPUTF8 (RFC 6531)")
    assert replies[1] == refusal and replies[3] == refusal
    assert replies[2][0] == 250 and replies[4][0] == 250  # the transaction goes on
    assert upstream.mail_commands == 1


async def test_upstream_dropping_during_rcpt_gives_451_and_nothing_delivered(
    upstream: RecordingUpstream,
) -> None:
    stall = Gate()  # the upstream stalls on RCPT until the test is over; ccguard's timeout is 1 s
    upstream.rcpt_gate = stall.hold
    settings = settings_for(upstream.port, upstream={"timeout": 1})

    def talk(port: int) -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example.org")
            client.mail("alice@example.org")
            return client.rcpt("bob@example.com")

    async with running_relay(settings) as relay:
        reply = await asyncio.to_thread(talk, relay.smtp_port)
        stall.open()
    assert reply == (451, b"4.4.2 Upstream server timed out, try again later")
    assert upstream.messages == []


async def test_transaction_without_message_still_gets_its_log_line(
    upstream: RecordingUpstream,
) -> None:
    log = LogCapture()

    def talk(port: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("client.example.org")
            client.mail("alice@example.org")
            client.rcpt("bob@example.com")
            client.rset()

    async with running_relay(settings_for(upstream.port), log) as relay:
        await asyncio.to_thread(talk, relay.smtp_port)
    lines = [e for e in log.events() if e["event"] == "transaction"]
    assert len(lines) == 1
    assert lines[0]["outcome"] == "no message" and lines[0]["recipients"] == 1
    assert len(lines[0]["queue_id"]) == 12


async def test_start_without_admin_users_says_how_to_add_one(upstream: RecordingUpstream) -> None:
    log = LogCapture()
    async with running_relay(settings_for(upstream.port), log):
        pass
    (warning,) = [e for e in log.events() if e["event"] == "no_admin_users"]
    assert "ccguard admin add-user NAME" in warning["detail"]
