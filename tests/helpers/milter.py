"""A real private Postfix whose smtpd calls a real ccguard milter (for the milter tests).

Shape (as docs/milter.md describes it): clients → Postfix :smtp (``smtpd_milters`` →
ccguard) → relayhost = the recording upstream.  ccguard's own deliveries (split copies,
released messages, notices) go to Postfix's re-injection listener, which runs no
milters (``receive_override_options = ...,no_milters``) and relays to the same upstream.
"""

from __future__ import annotations

import asyncio
import re
import smtplib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relay.app import Relay
from relay.credentials.users import UserDB
from tests.helpers.postfix import PostfixInstance, instance_dir, require_postfix, write_instance
from tests.helpers.process import free_port
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream

__all__ = [
    "ADMIN_PASSWORD",
    "CCGUARD_RECEIVED",
    "MILTER_MAIN_CF",
    "POSTFIX_RECEIVED",
    "RULES",
    "SENDER",
    "SmtpResult",
    "Stack",
    "delivered_one",
    "externals",
    "message",
    "milter_main_cf",
    "milter_stack",
    "postfix_dirs",
    "smtp_path",
    "submit",
    "wait_until",
    "without_postfix_received",
]

#: Postfix's Received header: its first line and every continuation line.
POSTFIX_RECEIVED = re.compile(
    rb"Received: from [^\r\n]+\r\n\tby postfix\.example\.net \(Postfix\) with E?SMTP id "
    rb"(?P<qid>[0-9A-F]+)[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*"
)

#: The main.cf lines of the README's milter shape (plus the socket).
MILTER_MAIN_CF = {
    "milter_protocol": "6",
    "milter_default_action": "tempfail",
    "milter_connect_timeout": "10s",
    "milter_command_timeout": "30s",
    "milter_content_timeout": "300s",
    "non_smtpd_milters": "",
}


def milter_main_cf(socket: str) -> dict[str, str]:
    """main.cf parameters for ``smtpd_milters = socket`` with the documented settings."""
    return {"smtpd_milters": socket, **MILTER_MAIN_CF}


SENDER = "alice@example.org"
ADMIN_PASSWORD = "correct horse battery staple"
RULES = {
    "rules": [
        {"name": "hold-mass", "min_visible_external": 8, "action": "quarantine"},
        {"name": "refuse-many", "min_visible_external": 6, "action": "reject"},
        {"name": "one-each", "min_visible_external": 5, "action": "split"},
        {"name": "hide-external", "min_visible_external": 3, "action": "rewrite"},
    ]
}
CCGUARD_RECEIVED = re.compile(
    rb"Received: from [^\r\n]+\r\n\tby ccguard\.test [^\r\n]+\r\n\t[^\r\n]+\r\n"
)


def externals(count: int) -> list[str]:
    """``count`` external addresses: p0@example.com, p1@example.com, ..."""
    return [f"p{i}@example.com" for i in range(count)]


def message(count: int, subject: str, *, extra: bytes = b"") -> bytes:
    """``count`` external recipients spread over a folded To and a CC field, internal
    ones in both and in a second (lower-case) to field; complete headers, so Postfix
    adds none.  ``extra`` header lines go after the Message-ID."""
    people = [f"Person {i} <p{i}@example.com>" for i in range(count)]
    half = len(people) // 2
    to1 = ",\r\n\t".join(["Colleague <colleague@example.org>", *people[:half]])
    cc2 = ", ".join(["boss@example.org", *people[half:]])
    return (
        (
            f"From: Alice <alice@example.org>\r\nTo: {to1}\r\n"
            f"Subject: {subject}\r\nCC: {cc2}\r\nto: team@example.org\r\n"
            f"Date: Mon, 02 Mar 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{subject}@example.org>\r\n"
        ).encode()
        + extra
        + f"\r\nBody of {subject}\r\n.dot line\r\n".encode()
    )


@dataclass
class SmtpResult:
    """What Postfix's SMTP client (the sender) was told at end of DATA."""

    code: int
    text: str
    refused: dict[str, Any]


def submit(port: int, message: bytes, sender: str, rcpts: list[str]) -> SmtpResult:
    """Send ``message`` to Postfix like an MUA; returns the reply to end of DATA, or the
    refusal of MAIL, or of the last RCPT when every RCPT was refused."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        code, text = client.mail(sender)
        if code >= 400:
            return SmtpResult(code, text.decode("utf-8", "replace"), {})
        refused = {}
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            if code >= 400:
                refused[rcpt] = (code, text)
        if len(refused) == len(rcpts):
            return SmtpResult(code, text.decode("utf-8", "replace"), refused)
        code, text = client.data(message)
        return SmtpResult(code, text.decode("utf-8", "replace"), refused)


async def wait_until(
    condition: Callable[[], bool], what: str, instance: PostfixInstance, timeout: float = 20
) -> None:
    """Poll ``condition`` (bounded); on timeout fail with Postfix's queue and log."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            queue = await asyncio.to_thread(instance.queue_listing)
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}\n--- postqueue -p ---\n{queue}"
                f"--- maillog ---\n{instance.log_text()}"
            )
        await asyncio.sleep(0.05)


@dataclass
class Stack:
    """Postfix with ccguard as its milter; the upstream Postfix relays to."""

    postfix: PostfixInstance
    relay: Relay
    upstream: RecordingUpstream
    log: LogCapture

    def send(self, data: bytes, rcpts: list[str]) -> SmtpResult:
        return submit(self.postfix.smtp_port, data, SENDER, rcpts)


@pytest.fixture
def postfix_dirs(tmp_path: Path) -> Iterator[list[PostfixInstance]]:
    """Postfix instances a test starts; each is stopped and removed afterwards."""
    require_postfix()
    started: list[PostfixInstance] = []
    try:
        yield started
    finally:
        for number, instance in enumerate(started):
            try:
                instance.stop()
            finally:
                instance.discard(keep_log=tmp_path / f"postfix{number}-maillog")


@asynccontextmanager
async def milter_stack(
    started: list[PostfixInstance],
    upstream: RecordingUpstream,
    *,
    deliver_to: int | None = None,
    milter_port: int | None = None,
    then_milter: int | None = None,
    postfix_main: dict[str, str] | None = None,
    **sections: dict[str, Any],
) -> AsyncIterator[Stack]:
    """Postfix (relayhost: ``upstream``) calling a ccguard milter (policy :data:`RULES`
    unless ``policy`` is given) whose ``[upstream]`` is Postfix's re-injection listener,
    or ``deliver_to``; ``then_milter`` is a second milter Postfix calls after ccguard,
    ``postfix_main`` more main.cf parameters."""
    port = milter_port or free_port()
    reinject = free_port()
    instance = write_instance(
        instance_dir(),
        smtp_port=free_port(),
        relayhost=f"[127.0.0.1]:{upstream.port}",
        reinject_port=reinject,
        main={
            **milter_main_cf(
                f"inet:127.0.0.1:{port}"
                + (f", inet:127.0.0.1:{then_milter}" if then_milter else "")
            ),
            **(postfix_main or {}),
        },
    )
    started.append(instance)
    sections.setdefault("policy", RULES)
    smtp = {"listen": "", **sections.pop("smtp", {})}
    milter = {"listen": f"inet:127.0.0.1:{port}", **sections.pop("milter", {})}
    settings = settings_for(deliver_to or reinject, smtp=smtp, milter=milter, **sections)
    UserDB(settings.admin.users_file).set_password("alice", ADMIN_PASSWORD)
    log = LogCapture()
    async with running_relay(settings, log) as relay:
        await asyncio.to_thread(instance.start)
        yield Stack(instance, relay, upstream, log)


async def smtp_path(data: bytes, rcpts: list[str], **sections: dict[str, Any]) -> tuple[Any, bytes]:
    """What the SMTP front makes of the same message: its reply and the bytes it
    delivered without its Received header (None when it delivered nothing)."""
    upstream = await RecordingUpstream().start()
    try:
        sections.setdefault("policy", RULES)
        async with running_relay(settings_for(upstream.port, **sections)) as relay:
            result = await asyncio.to_thread(submit, relay.smtp_port, data, SENDER, rcpts)
        if not upstream.messages:
            return result, b""
        (got,) = upstream.messages
        match = CCGUARD_RECEIVED.match(got.data)
        assert match, got.data[:300]
        return result, got.data[match.end() :]
    finally:
        await upstream.stop()


def without_postfix_received(data: bytes) -> bytes:
    """The delivered bytes without the Postfix Received header (ccguard's tags,
    inserted at the top, stand before it)."""
    match = POSTFIX_RECEIVED.search(data)
    assert match, data[:400]
    return data[: match.start()] + data[match.end() :]


async def delivered_one(stack: Stack) -> bytes:
    await wait_until(lambda: len(stack.upstream.messages) >= 1, "a delivery", stack.postfix)
    (got,) = stack.upstream.messages
    return got.data
