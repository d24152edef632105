"""Add, remove and list the users of a users file; shared by ``admin`` and ``smtp-user``."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from dataclasses import dataclass

from relay.cli.config import load_or_report
from relay.credentials.users import UserDB, UsersFileError
from relay.settings import Settings

__all__ = ["UsersCommands"]


@dataclass(frozen=True)
class UsersCommands:
    """The three commands for one kind of user (``kind`` as printed, e.g. "SMTP user")."""

    prog: str
    kind: str
    users_file: Callable[[Settings], str | None]
    missing_file_hint: str = ""

    def _users(self, args: argparse.Namespace) -> UserDB | None:
        settings = load_or_report(args.config)
        if settings is None:
            return None
        path = self.users_file(settings)
        if path is None:
            print(f"{self.prog}: {self.missing_file_hint}", file=sys.stderr)
            return None
        try:
            return UserDB(path)
        except UsersFileError as exc:
            print(f"{self.prog}: {exc}", file=sys.stderr)
            return None

    def _read_password(self, from_stdin: bool) -> str | None:
        if from_stdin:
            return sys.stdin.readline().rstrip("\r\n")
        if not sys.stdin.isatty():
            print(f"{self.prog}: no terminal; use --password-stdin", file=sys.stderr)
            return None
        first = getpass.getpass("New password: ")
        if first != getpass.getpass("Repeat password: "):
            print(f"{self.prog}: the passwords differ", file=sys.stderr)
            return None
        return first

    def add(self, args: argparse.Namespace) -> int:
        """Add a user or change its password (asked twice, or one line of stdin)."""
        users = self._users(args)
        if users is None:
            return 2
        password = self._read_password(args.password_stdin)
        if password is None:
            return 1
        try:
            new = users.set_password(args.name, password)
        except UsersFileError as exc:
            print(f"{self.prog}: {exc}", file=sys.stderr)
            return 1
        verb = "added" if new else "password changed for"
        print(f"{verb} {self.kind} {args.name} in {users.path}")
        return 0

    def remove(self, args: argparse.Namespace) -> int:
        """Remove a user; exit 1 if there was none by that name."""
        users = self._users(args)
        if users is None:
            return 2
        try:
            removed = users.remove(args.name)
        except UsersFileError as exc:
            print(f"{self.prog}: {exc}", file=sys.stderr)
            return 1
        if not removed:
            print(f"{self.prog}: no {self.kind} {args.name!r} in {users.path}", file=sys.stderr)
            return 1
        print(f"removed {self.kind} {args.name} from {users.path}")
        return 0

    def list(self, args: argparse.Namespace) -> int:
        """Print every user name, one a line."""
        users = self._users(args)
        if users is None:
            return 2
        for name in users.names():
            print(name)
        return 0

    def add_parser_arguments(self, parser: argparse.ArgumentParser) -> None:
        """NAME and ``--password-stdin`` of the add command."""
        parser.add_argument("name", help="user name (letters, digits, . _ @ -)")
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input",
        )
