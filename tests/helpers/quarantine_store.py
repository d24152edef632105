"""Shared helpers for the quarantine store tests."""

from __future__ import annotations

from typing import Any

from relay.quarantine import NewMessage

# 8-bit body (Latin-1 byte, UTF-8, a NUL and a lone CR) so byte-exactness is checked.
RAW = (
    b"From: Alice <alice@example.org>\r\n"
    b"To: bob@example.com, carol@example.net\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= to\r\n all\r\n"
    b"\r\n"
    b"caf\xe9 \xc3\xa9t\xc3\xa9\x00 raw\rCR\r\n"
)


def new_message(**overrides: Any) -> NewMessage:
    """A NewMessage with every field set; override any of them."""
    fields: dict[str, Any] = {
        "mail_from": "alice@example.org",
        "rcpt_tos": ("bob@example.com", "carol@example.net"),
        "message": RAW,
        "mail_options": ("SIZE=1234", "BODY=8BITMIME"),
        "client_ip": "127.0.0.1",
        "client_helo": "mua.example.org",
        "queue_id": "Q1a2b3c",
        "action": "quarantine",
        "rule": "bulk-external",
        "reason": "2 external addresses visible",
        "exposure": {"visible_external": 2, "per_header": {"to": 2}, "header_too_large": False},
        "received_at": 1_700_000_000.5,
    }
    fields.update(overrides)
    return NewMessage(**fields)


class Clock:
    """A settable clock so decision and ledger timestamps are predictable."""

    def __init__(self, now: float = 1_700_000_100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
