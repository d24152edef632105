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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.helpers.postfix import PostfixInstance

__all__ = [
    "MILTER_MAIN_CF",
    "POSTFIX_RECEIVED",
    "SmtpResult",
    "milter_main_cf",
    "submit",
    "wait_until",
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


@dataclass
class SmtpResult:
    """What Postfix's SMTP client (the sender) was told at end of DATA."""

    code: int
    text: str
    refused: dict[str, Any]


def submit(port: int, message: bytes, sender: str, rcpts: list[str]) -> SmtpResult:
    """Send ``message`` to Postfix like an MUA; returns the reply to end of DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail(sender)
        refused = {}
        for rcpt in rcpts:
            code, text = client.rcpt(rcpt)
            if code >= 400:
                refused[rcpt] = (code, text)
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
