"""``ccguard admin add-user|remove-user|list-users``: manage the admin users file."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from relay.cli.config import load_or_report
from relay.credentials.users import UserDB, UsersFileError

__all__ = ["register"]


def _users(args: argparse.Namespace) -> UserDB | None:
    settings = load_or_report(args.config)
    if settings is None:
        return None
    try:
        return UserDB(settings.admin.users_file)
    except UsersFileError as exc:
        print(f"ccguard admin: {exc}", file=sys.stderr)
        return None


def _read_password(from_stdin: bool) -> str | None:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        print("ccguard admin: no terminal; use --password-stdin", file=sys.stderr)
        return None
    first = getpass.getpass("New password: ")
    if first != getpass.getpass("Repeat password: "):
        print("ccguard admin: the passwords differ", file=sys.stderr)
        return None
    return first


def _add_user(args: argparse.Namespace) -> int:
    users = _users(args)
    if users is None:
        return 2
    password = _read_password(args.password_stdin)
    if password is None:
        return 1
    try:
        new = users.set_password(args.name, password)
    except UsersFileError as exc:
        print(f"ccguard admin: {exc}", file=sys.stderr)
        return 1
    verb = "added" if new else "password changed for"
    print(f"{verb} admin user {args.name} in {users.path}")
    return 0


def _remove_user(args: argparse.Namespace) -> int:
    users = _users(args)
    if users is None:
        return 2
    try:
        removed = users.remove(args.name)
    except UsersFileError as exc:
        print(f"ccguard admin: {exc}", file=sys.stderr)
        return 1
    if not removed:
        print(f"ccguard admin: no admin user {args.name!r} in {users.path}", file=sys.stderr)
        return 1
    print(f"removed admin user {args.name} from {users.path}")
    return 0


def _list_users(args: argparse.Namespace) -> int:
    users = _users(args)
    if users is None:
        return 2
    for name in users.names():
        print(name)
    return 0


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``admin add-user``, ``admin remove-user`` and ``admin list-users``."""
    admin = subparsers.add_parser("admin", help="manage admin users", parents=[common])
    sub = admin.add_subparsers(dest="admin_command", metavar="SUBCOMMAND", required=True)
    add = sub.add_parser("add-user", help="add a user or change its password", parents=[common])
    add.add_argument("name", help="user name (letters, digits, . _ @ -)")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )
    add.set_defaults(func=_add_user)
    remove = sub.add_parser("remove-user", help="remove a user", parents=[common])
    remove.add_argument("name")
    remove.set_defaults(func=_remove_user)
    listing = sub.add_parser("list-users", help="list user names", parents=[common])
    listing.set_defaults(func=_list_users)
