"""Shutdown closes every front at once (SMTP, implicit TLS, milter) and drains them
together within one ``shutdown_grace``: a real ccguard in the test's loop, a real
upstream holding DATA, a real SMTP client and the MTA's side of the milter protocol."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import stat
import time
from pathlib import Path

import pytest

from relay.app import Relay
from tests.helpers.process import free_port
from tests.helpers.relay import LogCapture, settings_for
from tests.helpers.smtp_auth import tls_smtp
from tests.helpers.sockets import refused
from tests.helpers.tls import Pki
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import Gate, wait_until
from tests.integration.test_milter_budget import Mta

GRACE = 3.0
MESSAGE = b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: slow\r\n\r\nhi\r\n"
#: Both fronts send their message's copy through the upstream, which holds it.
SPLIT = {"rules": [{"name": "one-each", "min_visible_external": 1, "action": "split"}]}


def send(port: int) -> int:
    """One message; the reply code to its DATA (or to what closed the session)."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=60)
    try:
        client.sendmail("alice@example.org", ["bob@example.com"], MESSAGE)
        return 250
    except smtplib.SMTPDataError as exc:
        return exc.smtp_code
    except smtplib.SMTPServerDisconnected:
        return 0
    finally:
        client.close()


async def test_every_front_stops_accepting_at_once_and_all_drain_within_one_grace(
    upstream: RecordingUpstream, pki: Pki
) -> None:
    gate = Gate()  # the upstream never answers DATA: both transactions outlast the grace
    upstream.data_gate = gate.hold
    tls_port, milter_port = free_port(), free_port()
    smtp = tls_smtp(pki, None, tls_listen=f"127.0.0.1:{tls_port}", shutdown_grace=GRACE)
    milter = {"listen": f"inet:127.0.0.1:{milter_port}"}
    patient = {"timeout": 30}  # the upstream's silence outlasts the grace, not this
    settings = settings_for(upstream.port, smtp=smtp, milter=milter, policy=SPLIT, upstream=patient)
    relay = Relay(settings, log=LogCapture().logger)
    await relay.start()
    stopped = False
    try:
        client = asyncio.create_task(asyncio.to_thread(send, relay.smtp_port))
        await wait_until(lambda: gate.waiting == 1, "the SMTP message is with the upstream")
        mta = await Mta.connect(milter_port)
        await mta.until_body(100)
        milter_answer = asyncio.create_task(mta.end())
        await wait_until(lambda: gate.waiting == 2, "the milter's split copy is with the upstream")

        started = time.monotonic()
        stopping = asyncio.create_task(relay.stop())
        await wait_until(lambda: not relay.listener.serving, "the plain listener closed")
        # While the plain listener drains, the other fronts take nobody new either.
        assert await asyncio.to_thread(refused, tls_port), "the TLS port still accepted"
        assert await asyncio.to_thread(refused, milter_port), "the milter port still accepted"
        await stopping
        stopped = True
        elapsed = time.monotonic() - started
    finally:
        gate.open()
        if not stopped:
            await relay.stop()
    # One grace for both transactions in flight, not one after the other.
    assert GRACE <= elapsed < 2 * GRACE, elapsed  # the old code took 2 graces or more
    code = await client
    assert code != 250 and code // 100 != 5  # never accepted, never a permanent refusal
    milter_result = await asyncio.gather(milter_answer, return_exceptions=True)
    assert isinstance(milter_result[0], asyncio.IncompleteReadError)  # the MTA tempfails
    mta.close()
    assert upstream.messages == []  # nothing half delivered


@pytest.mark.parametrize("replacement", ["file", "socket"])
async def test_a_milter_socket_replaced_meanwhile_is_left_alone_and_cuts_nothing(
    upstream: RecordingUpstream, tmp_path: Path, replacement: str
) -> None:
    """The milter's unix socket replaced while ccguard runs (by a plain file, or by
    another program's socket): the stop leaves what is there now, says so, and the
    SMTP transaction draining beside it still gets its 250."""
    gate = Gate()
    upstream.data_gate = gate.hold
    path = tmp_path / "milter.sock"
    milter = {"listen": f"unix:{path}"}
    patient = {"timeout": 30}
    settings = settings_for(upstream.port, milter=milter, upstream=patient)
    capture = LogCapture()
    relay = Relay(settings, log=capture.logger)
    await relay.start()
    stopped = False
    with contextlib.ExitStack() as other:
        try:
            client = asyncio.create_task(asyncio.to_thread(send, relay.smtp_port))
            await wait_until(lambda: gate.waiting == 1, "the SMTP message is with the upstream")
            path.unlink()
            if replacement == "file":
                path.write_text("not a socket\n")
            else:
                sock = other.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
                sock.bind(str(path))
                sock.listen(1)
            stopping = asyncio.create_task(relay.stop())
            await wait_until(lambda: not relay.listener.serving, "the plain listener closed")
            gate.open()  # the upstream answers within the grace
            await stopping
            stopped = True
        finally:
            gate.open()
            if not stopped:
                await relay.stop()
        assert await client == 250
        assert len(upstream.messages) == 1
        assert path.exists()  # somebody else's: left alone
        if replacement == "file":
            assert path.read_text() == "not a socket\n"
        else:
            assert stat.S_ISSOCK(path.lstat().st_mode)
    warned = [e for e in capture.events() if e["event"] == "milter socket not removed"]
    assert len(warned) == 1 and "was replaced since ccguard bound it" in warned[0]["error"]
