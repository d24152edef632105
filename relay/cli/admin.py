"""``ccguard admin add-user|remove-user|list-users``: manage the admin users file."""

from __future__ import annotations

import argparse
from typing import Any

from relay.cli.users_file import UsersCommands

__all__ = ["register"]

_COMMANDS = UsersCommands("ccguard admin", "admin user", lambda s: s.admin.users_file)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``admin add-user``, ``admin remove-user`` and ``admin list-users``."""
    admin = subparsers.add_parser("admin", help="manage admin users", parents=[common])
    sub = admin.add_subparsers(dest="admin_command", metavar="SUBCOMMAND", required=True)
    add = sub.add_parser("add-user", help="add a user or change its password", parents=[common])
    _COMMANDS.add_parser_arguments(add)
    add.set_defaults(func=_COMMANDS.add)
    remove = sub.add_parser("remove-user", help="remove a user", parents=[common])
    remove.add_argument("name")
    remove.set_defaults(func=_COMMANDS.remove)
    listing = sub.add_parser("list-users", help="list user names", parents=[common])
    listing.set_defaults(func=_COMMANDS.list)
