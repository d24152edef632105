"""Clients of two instances on one database: SMTP attempts, admin API calls, metrics."""

from __future__ import annotations

import re
import smtplib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers.admin import PASSWORD
from tests.helpers.instances import Instance

__all__ = [
    "EXTERNAL",
    "INTERNAL",
    "RCPTS",
    "SharedDatabase",
    "auth",
    "metric",
    "per_rcpt",
    "send",
    "split_message",
]

EXTERNAL = ["g1@example.com", "g2@example.net", "g3@example.com"]
INTERNAL = ["ia@example.org", "ib@example.org"]
RCPTS = EXTERNAL + INTERNAL  # split copies: g1, g2, g3, then one for both internal recipients


@dataclass(frozen=True)
class SharedDatabase:
    """The database several instances share: an SQLite file, or a postgresql:// URL
    whose password (never in the config) reaches the instances as ``PGPASSWORD``."""

    database: Path | str
    password: str | None = None

    def env(self) -> dict[str, str] | None:
        """Extra environment for the instances (``None``: nothing to add)."""
        return None if self.password is None else {"PGPASSWORD": self.password}


def split_message(tag: str) -> bytes:
    """A message every recipient of :data:`RCPTS` can see, with a unique Message-ID."""
    return (
        f"From: Ann <ann@example.org>\r\nTo: {', '.join(EXTERNAL)}\r\n"
        f"Cc: {', '.join(INTERNAL)}\r\nSubject: Training week\r\n"
        f"Message-ID: <{tag}@example.org>\r\n\r\nHello everyone.\r\n"
    ).encode()


def send(
    instance: Instance, message: bytes, rcpts: Sequence[str] = RCPTS
) -> tuple[int, str] | None:
    """(code, text) of the reply to end of DATA, or None when the connection was lost."""
    try:
        with smtplib.SMTP("127.0.0.1", instance.smtp_port, timeout=60) as client:
            client.ehlo("mua.example.org")
            client.mail("ann@example.org")
            for rcpt in rcpts:
                client.rcpt(rcpt)
            code, text = client.data(message)
            return code, text.decode()
    except (smtplib.SMTPServerDisconnected, ConnectionError):
        return None


def per_rcpt(rcpt_lists: Sequence[Sequence[str]]) -> Counter[str]:
    """How many copies each recipient got."""
    return Counter(r for rcpts in rcpt_lists for r in rcpts)


def metric(instance: Instance, name: str, labels: dict[str, str]) -> float:
    """One sample from the instance's /metrics (0 if absent)."""
    text = httpx.get(instance.admin_url + "/metrics", timeout=5).text
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return 0.0


def auth() -> httpx.BasicAuth:
    """alice's API credentials (the shared users file)."""
    return httpx.BasicAuth("alice", PASSWORD)
