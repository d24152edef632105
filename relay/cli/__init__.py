"""The ``ccguard`` command line: one module per subcommand group.

Each module in :data:`COMMANDS` has ``register(subparsers)``, which adds its
parser(s) and sets ``func`` to a callable taking the parsed arguments and
returning the exit code.  ``--config`` is accepted by every command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from relay import __version__

__all__ = ["COMMANDS", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command whose reader went away

COMMANDS = (
    "relay.cli.serve",
    "relay.cli.config",
    "relay.cli.check",
    "relay.cli.hash",
    "relay.cli.health",
    "relay.cli.quarantine",
    "relay.cli.audit",
    "relay.cli.requests",
    "relay.cli.admin",
    "relay.cli.smtp_user",
    "relay.cli.db",
    "relay.cli.report",
)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="TOML config file (default: $CCGUARD_CONFIG, else built-in defaults)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every subcommand registered."""
    common = _common()
    parser = argparse.ArgumentParser(
        prog="ccguard", description="SMTP relay that stops bulk-CC leaks.", parents=[common]
    )
    parser.add_argument("--version", action="version", version=f"ccguard {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ccguard`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "config"):
        args.config = None
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _reader_gone()
    return code


def _reader_gone() -> int:
    """stdout was closed by its reader (``ccguard ... | head``): stop quietly.

    stdout is pointed at /dev/null so the interpreter's final flush of what
    is still buffered cannot fail again and print a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
    return EXIT_PIPE
