"""``ccguard serve``, ``ccguard milter`` and ``ccguard sink``."""

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


def _milter(args: argparse.Namespace) -> int:
    settings = load_or_report(args.config)
    if settings is None:
        return 2
    if not settings.milter.listen:
        print(
            "ccguard milter: milter.listen is empty: set [milter] listen, "
            'e.g. listen = "inet:127.0.0.1:8890"'
        )
        return 2
    only = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={"listen": ""})})
    return asyncio.run(serve(only))


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
    """Add ``serve``, ``milter`` and ``sink``."""
    serve_p = subparsers.add_parser("serve", help="run the relay", parents=[common])
    serve_p.set_defaults(func=_serve)
    milter = subparsers.add_parser(
        "milter",
        help="run only the milter front ([milter] listen), no SMTP listener",
        parents=[common],
    )
    milter.set_defaults(func=_milter)
    sink = subparsers.add_parser(
        "sink", help="run a capture SMTP server that writes .eml files", parents=[common]
    )
    sink.add_argument("--listen", default="127.0.0.1:10026", help="HOST:PORT (default %(default)s)")
    sink.add_argument(
        "--dir", default="var/sink", help="folder for .eml files (default %(default)s)"
    )
    sink.set_defaults(func=_sink)
