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
    _COMMANDS.add_subcommands(
        admin, common, "admin_command", ("add-user", "remove-user", "list-users")
    )
