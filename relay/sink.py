"""``ccguard sink``: a tiny SMTP server that writes every message it receives to a folder.

It is the demo config's upstream, so a newcomer sees mail flow through
ccguard without a mail server of their own.  Each message is written as
``<time>-<n>.eml`` with exactly the bytes received, and its envelope as a
``.json`` file beside it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

__all__ = ["SinkHandler", "start_sink"]


class SinkHandler:
    """aiosmtpd handler that stores each message as an ``.eml`` file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._counter = itertools.count(1)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        stem = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{next(self._counter):06d}"
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "mail_options": list(envelope.mail_options),
        }
        data: bytes = envelope.original_content
        await asyncio.to_thread(self._write, stem, data, meta)
        return f"250 2.0.0 Ok: stored as {stem}.eml"

    def _write(self, stem: str, data: bytes, meta: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{stem}.tmp"
        tmp.write_bytes(data)
        (self.folder / f"{stem}.json").write_text(json.dumps(meta, ensure_ascii=False))
        tmp.rename(self.folder / f"{stem}.eml")


async def start_sink(host: str, port: int, folder: Path) -> asyncio.Server:
    """Start the sink in the running loop; returns the asyncio server."""
    handler = SinkHandler(folder)
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="ccguard-sink.localdomain",
            ident="ccguard sink",
            enable_SMTPUTF8=True,
            data_size_limit=None,
            loop=loop,
        ),
        host=host,
        port=port,
        reuse_address=True,
    )
