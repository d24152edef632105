"""``ccguard hash ADDRESS``: the keyed hash the logs show for an address."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from relay.cli.config import load_or_report
from relay.observability.redact import Redactor

__all__ = ["register"]

NO_KEY = (
    "ccguard: [logging] hash_key is not set, so log hashes change on every restart and "
    "cannot be reproduced; set it in the config file or CCGUARD_LOGGING__HASH_KEY"
)


def _hash(args: argparse.Namespace) -> int:
    settings = load_or_report(args.config)
    if settings is None:
        return 2
    if not settings.logging.hash_key:
        print(NO_KEY, file=sys.stderr)
        return 2
    bad = [a for a in args.addresses if "@" not in a.strip("<> ")]
    if bad:
        print(f"ccguard: not an email address: {bad[0]!r}", file=sys.stderr)
        return 2
    redactor = Redactor(settings.logging.hash_key)
    for address in args.addresses:
        print(redactor.address(address))
    return 0


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``hash ADDRESS...``."""
    parser = subparsers.add_parser(
        "hash",
        help="print the hash that logs show for an address",
        description="Print the keyed hash ([logging] hash_key) that log lines use for "
        "each ADDRESS, one per line, so you can grep the logs for one person.",
        parents=[common],
    )
    parser.add_argument("addresses", nargs="+", metavar="ADDRESS")
    parser.set_defaults(func=_hash)
