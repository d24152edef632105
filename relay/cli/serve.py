"""``ccguard serve`` and ``ccguard sink``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

from relay.app import serve, serve_worker, wait_for_stop_signal
from relay.cli.config import load_or_report
from relay.settings import Settings, parse_listen

__all__ = ["register"]


def _serve(args: argparse.Namespace) -> int:
    settings = load_or_report(args.config)
    if settings is None:
        return 2
    run = _runner(settings.smtp.event_loop)
    if run is None:
        print('ccguard: [smtp] event_loop = "uvloop" but uvloop is not installed', file=sys.stderr)
        print("  install it with: pip install 'ccguard[fast]'", file=sys.stderr)
        return 2
    if args.worker is not None:
        return run(serve_worker(settings, args.worker, args.ready_fd))
    if settings.smtp.worker_count > 1:
        return asyncio.run(_supervise(settings, args))  # it only waits: no need for speed
    return run(serve(settings))


def _runner(kind: str) -> Callable[[Coroutine[Any, Any, int]], int] | None:
    """``asyncio.run`` or ``uvloop.run`` as ``[smtp] event_loop`` asks (None: not installed)."""
    if kind == "asyncio":
        return asyncio.run
    try:
        import uvloop
    except ImportError:
        return None if kind == "uvloop" else asyncio.run
    run: Callable[[Coroutine[Any, Any, int]], int] = uvloop.run
    return run


async def _supervise(settings: Settings, args: argparse.Namespace) -> int:
    from relay.observability.logging import configure_logging
    from relay.smtp.workers import Supervisor, WorkerSpec

    configure_logging(settings.logging)
    serve_args = ["--config", args.config] if args.config else []
    smtp = settings.smtp
    spec = WorkerSpec(serve_args, smtp.worker_count, smtp.shutdown_grace, settings.policy.mode)
    return await Supervisor(spec, structlog.get_logger("ccguard.supervisor")).run()


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
    # Set by the supervisor of [smtp] workers, not by hand.
    serve_p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    serve_p.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    serve_p.set_defaults(func=_serve)
    sink = subparsers.add_parser(
        "sink", help="run a capture SMTP server that writes .eml files", parents=[common]
    )
    sink.add_argument("--listen", default="127.0.0.1:10026", help="HOST:PORT (default %(default)s)")
    sink.add_argument(
        "--dir", default="var/sink", help="folder for .eml files (default %(default)s)"
    )
    sink.set_defaults(func=_sink)
