"""``ccguard serve`` and ``ccguard sink``."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from relay.app import serve, wait_for_stop_signal
from relay.cli.config import load_or_report
from relay.settings import parse_listen

__all__ = ["register"]


def _serve(args: argparse.Namespace) -> int:
    settings = load_or_report(args.config)
    if settings is None:
        return 2
    return asyncio.run(serve(settings))


async def _run_sink(host: str, port: int, folder: Path) -> int:
    from relay.sink import start_sink

    server = await start_sink(host, port, folder)
    bound = server.sockets[0].getsockname()
    print(f"ccguard sink listening on {bound[0]}:{bound[1]}, writing to {folder}", flush=True)
    await wait_for_stop_signal()
    server.close()
    await server.wait_closed()
    return 0


def _sink(args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        print(f"ccguard sink: --listen: {exc}")
        return 2
    return asyncio.run(_run_sink(host, port, Path(args.dir)))


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``serve`` and ``sink``."""
    serve_p = subparsers.add_parser("serve", help="run the relay", parents=[common])
    serve_p.set_defaults(func=_serve)
    sink = subparsers.add_parser(
        "sink", help="run a capture SMTP server that writes .eml files", parents=[common]
    )
    sink.add_argument("--listen", default="127.0.0.1:10026", help="HOST:PORT (default %(default)s)")
    sink.add_argument(
        "--dir", default="var/sink", help="folder for .eml files (default %(default)s)"
    )
    sink.set_defaults(func=_sink)
