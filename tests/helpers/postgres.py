"""A private PostgreSQL cluster for the tests: initdb in a temp folder, pg_ctl on loopback.

PostgreSQL refuses to run as root, so when the tests run as root the server
programs run as the ``postgres`` system user (Debian's package creates it)
through ``runuser``.  Nothing is mocked and nothing is skipped: a machine
without PostgreSQL fails the tests that need it, loudly.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.helpers.process import free_port

__all__ = ["PgCluster", "find_bindir"]

_USER = "ccguard_test"


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/<ver>/bin with initdb; raises if none."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL server programs not found (/usr/lib/postgresql/*/bin/initdb): "
            "run scripts/install-system-deps.sh (apt-get install postgresql)"
        )
    return Path(found[-1]).parent


class PgCluster:
    """One cluster: superuser ``ccguard_test`` with a random password (scram over TCP)."""

    def __init__(self, name: str) -> None:
        self.bindir = find_bindir()
        # Not under pytest's tmp_path: that is 0700 root, which the server user cannot enter.
        self.base = Path(tempfile.mkdtemp(prefix=f"ccguard-pg-{name}-"))
        self.data = self.base / "data"
        self.password = secrets.token_hex(12)
        self.password_file = self.base / "password"
        self.password_file.write_text(self.password + "\n")
        self.password_file.chmod(0o600)
        self.port = 0
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root but no 'postgres' user exists") from None
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as_user, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> PgCluster:
        """initdb the data folder (once)."""
        pwfile = self.base / "initpw"
        pwfile.write_text(self.password + "\n")
        if self._as_user:
            shutil.chown(pwfile, "postgres")
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", _USER, "--pwfile",
            str(pwfile), "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
            "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        return self

    def start(self) -> None:
        """pg_ctl start on a free loopback port (the same port again after a stop)."""
        self.port = self.port or free_port()
        # fsync off: a test cluster need not survive a power cut, and it is much faster.
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.base} "
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(self.data),
            "-l", str(self.base / "server.log"), "-o", opts,
        )  # fmt: skip

    def stop(self) -> None:
        """pg_ctl stop (fast: open connections are cut, as in an outage)."""
        self._run(str(self.bindir / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(self.data))

    def destroy(self) -> None:
        """Stop (if running) and remove the folder."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def url(self, dbname: str, *, with_user: bool = True) -> str:
        """A libpq URL for ``dbname`` (no password in it)."""
        user = f"{_USER}@" if with_user else ""
        return f"postgresql://{user}127.0.0.1:{self.port}/{dbname}"

    def admin_connect(self) -> psycopg.Connection[tuple[object, ...]]:
        """An autocommit connection to the ``postgres`` database, for setup."""
        return psycopg.connect(self.url("postgres"), password=self.password, autocommit=True)

    def create_database(self) -> str:
        """A new empty database; returns its name."""
        name = f"t_{secrets.token_hex(6)}"
        with self.admin_connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return name
