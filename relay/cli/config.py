"""``ccguard config check``: validate a configuration file."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from relay.errors import ConfigError
from relay.settings import Settings, load_settings

__all__ = ["load_or_report", "register"]


def load_or_report(path: str | None) -> Settings | None:
    """Load settings, or print every problem as ``section.key: reason`` to stderr."""
    try:
        return load_settings(path)
    except ConfigError as exc:
        print("ccguard: invalid configuration:", file=sys.stderr)
        for line in exc.lines():
            print(f"  {line}", file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    settings = load_or_report(args.config)
    if settings is None:
        return 2
    print(f"configuration OK ({args.config or 'built-in defaults'})")
    return 0


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``config check``."""
    config = subparsers.add_parser("config", help="configuration tools", parents=[common])
    sub = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    check = sub.add_parser("check", help="validate the configuration", parents=[common])
    check.set_defaults(func=_check)
