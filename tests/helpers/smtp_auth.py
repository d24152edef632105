"""Shared parts of the listener TLS/AUTH tests: users, settings and what to read back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from relay.app import Relay
from relay.credentials import UserDB
from tests.helpers.observability import parse_metrics
from tests.helpers.relay import LogCapture
from tests.helpers.tls import Pki

__all__ = [
    "APP2_PASSWORD", "OUTSIDE", "PASSWORD", "auth_attempts", "make_users_file", "tls_smtp",
    "transactions", "until",
]  # fmt: skip

PASSWORD = "app1-Pa55word"
APP2_PASSWORD = "app2-Pa55word"
OUTSIDE = ["192.0.2.0/24"]  # TEST-NET-1: loopback clients are "outside"


def make_users_file(path: Path) -> Path:
    """An SMTP users file with app1 and app2."""
    UserDB(path).set_password("app1", PASSWORD)
    UserDB(path).set_password("app2", APP2_PASSWORD)
    return path


def tls_smtp(pki: Pki, users_file: Path | None, **extra: Any) -> dict[str, Any]:
    """``[smtp]`` with the localhost certificate and (given a users file) ``[smtp.auth]``."""
    cert, key = pki.localhost
    smtp: dict[str, Any] = {"tls_cert": str(cert), "tls_key": str(key)}
    if users_file is not None:
        smtp["auth"] = {"users_file": str(users_file), **extra.pop("auth", {})}
    smtp.update(extra)
    return smtp


def auth_attempts(relay: Relay, mechanism: str, result: str) -> float:
    """``ccguard_smtp_auth_attempts_total`` for one mechanism and result."""
    scrape = parse_metrics(relay.metrics.render()[0])
    return scrape.value("ccguard_smtp_auth_attempts_total", mechanism=mechanism, result=result)


def transactions(log: LogCapture) -> list[dict[str, Any]]:
    """The transaction log lines of messages (not of abandoned transactions)."""
    return [e for e in log.events() if e["event"] == "transaction" and "action" in e]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (bounded: 10 s) until ``condition()`` holds."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
