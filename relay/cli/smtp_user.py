"""``ccguard smtp-user add|remove|list``: manage ``[smtp.auth] users_file`` (SMTP AUTH).

Same file format and commands as the admin users; the running relay re-reads
the file when it changes, so a new user can log in without a restart.
"""

from __future__ import annotations

import argparse
from typing import Any

from relay.cli.users_file import UsersCommands

__all__ = ["register"]

_COMMANDS = UsersCommands(
    "ccguard smtp-user",
    "SMTP user",
    lambda s: s.smtp.auth.users_file,
    missing_file_hint="[smtp.auth] users_file is not set in the configuration",
)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``smtp-user add``, ``smtp-user remove`` and ``smtp-user list``."""
    parser = subparsers.add_parser("smtp-user", help="manage SMTP AUTH users", parents=[common])
    sub = parser.add_subparsers(dest="smtp_user_command", metavar="SUBCOMMAND", required=True)
    add = sub.add_parser("add", help="add a user or change its password", parents=[common])
    _COMMANDS.add_parser_arguments(add)
    add.set_defaults(func=_COMMANDS.add)
    remove = sub.add_parser("remove", help="remove a user", parents=[common])
    remove.add_argument("name")
    remove.set_defaults(func=_COMMANDS.remove)
    listing = sub.add_parser("list", help="list user names", parents=[common])
    listing.set_defaults(func=_COMMANDS.list)
