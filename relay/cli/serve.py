"""``ccguard serve``, ``ccguard milter`` and ``ccguard sink``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

from relay.app import serve
from relay.cli.config import load_or_report
from relay.settings import Settings, parse_listen
from relay.signals import wait_for_stop_signal

__all__ = ["register"]


def _serve(args: argparse.Namespace) -> int:
    settings = load_or_report(args.config)
    if settings is None:
        return 2
    run = _loop_runner(settings)
    if run is None:
        return 2
    if args.worker is not None:
        return run(serve_worker(settings, args))
    if settings.smtp.worker_count > 1:
        return asyncio.run(_supervise(settings, args))  # it only waits: no need for speed
    return run(serve(settings))


def _loop_runner(settings: Settings) -> Callable[[Coroutine[Any, Any, int]], int] | None:
    """The runner ``[smtp] event_loop`` asks for; None (said on stderr) if it is missing."""
    run = _runner(settings.smtp.event_loop)
    if run is None:
        print('ccguard: [smtp] event_loop = "uvloop" but uvloop is not installed', file=sys.stderr)
        print("  install it with: pip install 'ccguard[fast]'", file=sys.stderr)
    return run


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


async def serve_worker(settings: Settings, args: argparse.Namespace) -> int:
    """One of ``[smtp] workers``: :func:`serve` on the sockets the supervisor bound,
    its metrics in the supervisor's directory."""
    from relay.observability import multiprocess
    from relay.smtp.workers import die_with_parent, inherited_sockets

    die_with_parent()
    directory = os.environ[multiprocess.ENV]
    multiprocess.enable(directory)
    index: int = args.worker
    structlog.contextvars.bind_contextvars(worker=index)
    inherited = inherited_sockets(
        args.listen_fds, args.tls_listen_fds, directory, index, args.milter_fds
    )
    return await serve(
        settings, worker=index, ready_fd=args.ready_fd, metrics_dir=directory, inherited=inherited
    )


async def _supervise(settings: Settings, args: argparse.Namespace) -> int:
    from relay.observability.logging import configure_logging
    from relay.smtp.workers import Supervisor, WorkerSpec

    configure_logging(settings.logging)
    serve_args = ["--config", args.config] if args.config else []
    smtp = settings.smtp
    spec = WorkerSpec(
        serve_args, smtp.worker_count, smtp.shutdown_grace, settings.policy.mode,
        listen=smtp.listen, tls_listen=smtp.tls_listen, backlog=smtp.backlog,
        milter=settings.milter.address, milter_mode=settings.milter.mode,
    )  # fmt: skip
    return await Supervisor(spec, structlog.get_logger("ccguard.supervisor")).run()


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
    run = _loop_runner(settings)
    if run is None:
        return 2
    only = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={"listen": ""})})
    return run(serve(only))


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
    # Set by the supervisor of [smtp] workers, not by hand.
    serve_p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    serve_p.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    serve_p.add_argument("--listen-fds", default="", help=argparse.SUPPRESS)
    serve_p.add_argument("--tls-listen-fds", default="", help=argparse.SUPPRESS)
    serve_p.add_argument("--milter-fds", default="", help=argparse.SUPPRESS)
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
