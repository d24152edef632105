"""ccguard behind a real, private Postfix: the two deployment shapes of the README.

Each test starts its own Postfix instance from a temp directory (own config, queue and
maillog, listening on 127.0.0.1 only) and always stops it.  Needs root and the Debian
``postfix`` package; without them the tests fail with a message saying so.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import smtplib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relay.credentials import UserDB
from tests.helpers.postfix import (
    PostfixInstance,
    instance_dir,
    require_postfix,
    write_instance,
)
from tests.helpers.process import free_port
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.tls import make_pki
from tests.helpers.upstream import Received, RecordingUpstream

pytestmark = pytest.mark.postfix

SENDER = "alice@example.org"
RCPTS = ["bob@example.com", "carol@example.net"]
# Complete headers, so Postfix's cleanup adds nothing but its Received header.
MESSAGE = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: Bob <bob@example.com>, Carol <carol@example.net>\r\n"
    b"Subject: postfix end to end\r\n"
    b"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
    b"Message-ID: <postfix-e2e-1@example.org>\r\n"
    b"\r\n"
    b"Hello both,\r\n"
    b".a line starting with a dot\r\n"
    b"\r\n"
    b"-- \r\nAlice\r\n"
)
CCGUARD_RECEIVED = re.compile(
    rb"Received: from [^\r\n]+ \(\[127\.0\.0\.1\]\)\r\n"
    rb"\tby ccguard\.test \(ccguard\) with E?SMTP id [0-9A-Z]{12};\r\n"
    rb"\t[^\r\n]+\r\n"
)
# "for <rcpt>" only appears with a single recipient, so the folding varies.
POSTFIX_RECEIVED = re.compile(
    rb"Received: from [^\r\n]+\r\n"
    rb"\tby postfix\.example\.net \(Postfix\) with E?SMTP id (?P<qid>[0-9A-F]+)"
    rb"(;\r\n|\r\n\t[^\r\n]*;\r\n)\t[^\r\n]+\r\n"
)

Launcher = Callable[..., PostfixInstance]


@pytest.fixture
def postfix(tmp_path: Path) -> Iterator[Launcher]:
    """Start private Postfix instances on demand; every one is stopped at teardown."""
    require_postfix()
    started: list[PostfixInstance] = []

    def launch(**config: Any) -> PostfixInstance:
        instance = write_instance(instance_dir(), **config)
        started.append(instance)
        instance.start()
        return instance

    try:
        yield launch
    finally:
        for number, instance in enumerate(started):
            try:
                instance.stop()
            finally:
                instance.discard(keep_log=tmp_path / f"postfix{number}-maillog")


def submit(port: int, message: bytes = MESSAGE) -> dict[str, Any]:
    """What an MUA or application does: hand the message to Postfix over SMTP."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail(SENDER, RCPTS, message)


async def wait_until(
    condition: Callable[[], bool], what: str, instance: PostfixInstance, timeout: float = 15
) -> None:
    """Poll ``condition`` (bounded); on timeout fail with Postfix's queue and log."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            queue = await asyncio.to_thread(instance.queue_listing)
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}\n--- postqueue -p ---\n{queue}"
                f"--- maillog ---\n{instance.log_text()}"
            )
        await asyncio.sleep(0.05)


async def wait_queue_empty(instance: PostfixInstance) -> None:
    queue: list[str] = ["?"]

    def empty() -> bool:
        queue[:] = instance.queue_ids()
        return not queue

    await wait_until(empty, "Postfix's queue to be empty", instance)


def strip(pattern: re.Pattern[bytes], data: bytes, who: str) -> tuple[re.Match[bytes], bytes]:
    match = pattern.match(data)
    assert match, f"expected {who}'s Received header next, got: {data[:300]!r}"
    return match, data[match.end() :]


def assert_envelope(got: Received) -> None:
    assert got.mail_from == SENDER
    assert sorted(got.rcpt_tos) == RCPTS


async def test_smarthost_postfix_relays_through_ccguard(
    postfix: Launcher, upstream: RecordingUpstream
) -> None:
    async with running_relay(settings_for(upstream.port)) as relay:
        pf = await asyncio.to_thread(
            postfix, smtp_port=free_port(), relayhost=f"[127.0.0.1]:{relay.smtp_port}"
        )
        refused = await asyncio.to_thread(submit, pf.smtp_port)
        assert refused == {}
        await wait_until(lambda: len(upstream.messages) >= 1, "the upstream to get it", pf)
        await wait_queue_empty(pf)

    (got,) = upstream.messages
    assert_envelope(got)
    _, rest = strip(CCGUARD_RECEIVED, got.data, "ccguard")
    _, rest = strip(POSTFIX_RECEIVED, rest, "Postfix")
    assert rest == MESSAGE


async def test_content_filter_delivers_exactly_one_copy(
    postfix: Launcher, upstream: RecordingUpstream
) -> None:
    reinject = free_port()
    async with running_relay(settings_for(reinject)) as relay:
        pf = await asyncio.to_thread(
            postfix,
            smtp_port=free_port(),
            relayhost=f"[127.0.0.1]:{upstream.port}",
            content_filter=f"ccguard:[127.0.0.1]:{relay.smtp_port}",
            reinject_port=reinject,
        )
        assert await asyncio.to_thread(submit, pf.smtp_port) == {}
        await wait_until(lambda: len(upstream.messages) >= 1, "the final upstream to get it", pf)
        await wait_queue_empty(pf)

    (got,) = upstream.messages
    assert_envelope(got)
    assert_content_filter_trace(got.data)


def assert_content_filter_trace(data: bytes) -> None:
    """Re-injection Received, then ccguard's, then the first Postfix hop's, then the message."""
    second, rest = strip(POSTFIX_RECEIVED, data, "the re-injecting Postfix")
    _, rest = strip(CCGUARD_RECEIVED, rest, "ccguard")
    first, rest = strip(POSTFIX_RECEIVED, rest, "the first Postfix hop")
    assert second["qid"] != first["qid"], "the re-injected message must be a new queue entry"
    assert rest == MESSAGE


async def test_content_filter_keeps_message_queued_while_ccguard_answers_451(
    postfix: Launcher, upstream: RecordingUpstream
) -> None:
    ccguard_port, reinject, closed = free_port(), free_port(), free_port()
    broken = settings_for(closed, smtp={"listen": f"127.0.0.1:{ccguard_port}"})
    async with running_relay(broken):
        pf = await asyncio.to_thread(
            postfix,
            smtp_port=free_port(),
            relayhost=f"[127.0.0.1]:{upstream.port}",
            content_filter=f"ccguard:[127.0.0.1]:{ccguard_port}",
            reinject_port=reinject,
        )
        assert await asyncio.to_thread(submit, pf.smtp_port) == {}
        await wait_until(lambda: "status=deferred" in pf.log_text(), "a deferral", pf)
        listing = await asyncio.to_thread(pf.queue_listing)

    (queued,) = pf.queue_ids()
    assert "451 4.4.1" in listing, listing
    deferrals = [line for line in pf.log_text().splitlines() if "status=deferred" in line]
    assert deferrals and all(
        "postfix/ccguard/smtp[" in line and "451 4.4.1" in line for line in deferrals
    ), deferrals
    assert upstream.messages == []

    fixed = settings_for(reinject, smtp={"listen": f"127.0.0.1:{ccguard_port}"})
    async with running_relay(fixed):
        await asyncio.to_thread(pf.flush)
        await wait_until(lambda: len(upstream.messages) >= 1, "delivery after the flush", pf)
        await wait_queue_empty(pf)

    (got,) = upstream.messages
    assert_envelope(got)
    assert_content_filter_trace(got.data)
    assert f"{queued}: removed" in pf.log_text()


async def test_smarthost_upstream_deferral_is_retried_by_postfix_without_duplicates(
    postfix: Launcher, upstream: RecordingUpstream
) -> None:
    answers = iter(["451 4.3.0 mailbox busy, later"])
    upstream.data_hook = lambda envelope: next(answers, None)
    async with running_relay(settings_for(upstream.port)) as relay:
        pf = await asyncio.to_thread(
            postfix, smtp_port=free_port(), relayhost=f"[127.0.0.1]:{relay.smtp_port}"
        )
        assert await asyncio.to_thread(submit, pf.smtp_port) == {}
        await wait_until(lambda: "status=deferred" in pf.log_text(), "a deferral", pf)
        listing = await asyncio.to_thread(pf.queue_listing)
        assert "451 4.4.0" in listing and "mailbox busy" in listing, listing
        assert upstream.messages == []

        await asyncio.to_thread(pf.flush)
        await wait_until(lambda: len(upstream.messages) >= 1, "delivery after the flush", pf)
        await wait_queue_empty(pf)

    (got,) = upstream.messages
    assert upstream.data_started == 2
    assert_envelope(got)
    _, rest = strip(CCGUARD_RECEIVED, got.data, "ccguard")
    _, rest = strip(POSTFIX_RECEIVED, rest, "Postfix")
    assert rest == MESSAGE


async def test_postfix_with_tls_encrypt_and_sasl_relays_through_ccguard(
    postfix: Launcher, upstream: RecordingUpstream, tmp_path: Path
) -> None:
    """The README's "TLS + AUTH for applications" shape with Postfix as the application:
    ccguard allows no network (loopback is "outside"), so only AUTH after STARTTLS works."""
    pki = make_pki(tmp_path)
    users = tmp_path / "smtp-users.json"
    UserDB(users).set_password("postfix-site", "site-Pa55word")
    cert, key = pki.localhost
    smtp = {
        "tls_cert": str(cert), "tls_key": str(key), "starttls": "required",
        "allowed_networks": ["192.0.2.0/24"], "auth": {"users_file": str(users)},
    }  # fmt: skip
    # Postfix's smtp client (user postfix) reads the map: not below the 0700 tmp_path.
    secrets = await asyncio.to_thread(instance_dir)
    try:
        async with running_relay(settings_for(upstream.port, smtp=smtp)) as relay:
            passwords = secrets / "sasl_passwd"
            passwords.write_text(f"[127.0.0.1]:{relay.smtp_port} postfix-site:site-Pa55word\n")
            passwords.chmod(0o644)
            client = {
                "smtp_tls_security_level": "encrypt",
                "smtp_sasl_auth_enable": "yes",
                "smtp_sasl_password_maps": f"texthash:{passwords}",
                "smtp_sasl_security_options": "noanonymous",
                "smtp_sasl_tls_security_options": "noanonymous",
                "smtp_tls_loglevel": "1",
            }
            pf = await asyncio.to_thread(
                postfix, smtp_port=free_port(), relayhost=f"[127.0.0.1]:{relay.smtp_port}",
                main=client,
            )  # fmt: skip
            assert await asyncio.to_thread(submit, pf.smtp_port) == {}
            await wait_until(lambda: len(upstream.messages) >= 1, "the upstream to get it", pf)
            await wait_queue_empty(pf)
            log = pf.log_text()
    finally:
        shutil.rmtree(secrets, ignore_errors=True)

    (got,) = upstream.messages
    assert_envelope(got)
    assert b"with ESMTPSA id" in got.data.split(b"\r\n\r\n", 1)[0]
    assert re.search(r"TLS connection established to \S+: TLSv1\.[23]", log), log
    assert "status=sent" in log
