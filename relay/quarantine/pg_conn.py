"""Connecting to PostgreSQL: the connection string, the pool, and error translation.

The URL is handed to libpq as is, so every libpq parameter works
(``sslmode``, ``sslrootcert``, ``host=/run/postgresql``…).  The password is
never required in the config file: libpq reads ``PGPASSWORD`` and
``~/.pgpass`` itself; ``[quarantine] password_file`` is the third way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from relay.errors import StoreError
from relay.quarantine.pg_sql import Conn

__all__ = ["PgOptions", "build_conninfo", "describe", "make_pool", "translate_error"]


@dataclass(frozen=True, slots=True)
class PgOptions:
    """``[quarantine]`` settings that shape the connections (seconds)."""

    password_file: str | None = None
    pool_size: int = 5
    connect_timeout: float = 5.0
    statement_timeout: float = 10.0


def describe(url: str) -> str:
    """``postgresql://user@host:port/db`` without any password, for messages and logs."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql (unparsable URL)"
    user = f"{params['user']}@" if params.get("user") else ""
    host = str(params.get("host") or "localhost")
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{user}{host}{port}/{params.get('dbname') or ''}"


def _read_password(path: str) -> str:
    try:
        return Path(path).expanduser().read_text(encoding="utf-8").strip("\r\n")
    except OSError as exc:
        raise StoreError(f"quarantine.password_file {path}: cannot read: {exc.strerror}") from None


def build_conninfo(url: str, options: PgOptions) -> str:
    """The libpq connection string: the URL plus timeouts (and the password file's password).

    Server ``options`` already in the URL (e.g. ``-c search_path=ccguard``) are kept;
    the statement timeout is added after them.
    """
    try:
        given = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise StoreError(f"quarantine store {describe(url)}: bad URL: {exc}") from None
    timeout = f"-c statement_timeout={int(options.statement_timeout * 1000)}"
    extra: dict[str, str | int] = {
        "connect_timeout": max(1, round(options.connect_timeout)),
        "options": f"{given['options']} {timeout}" if given.get("options") else timeout,
    }
    if not given.get("application_name"):
        extra["application_name"] = "ccguard"
    if options.password_file:
        extra["password"] = _read_password(options.password_file)
    return make_conninfo(url, **extra)


def make_pool(conninfo: str, options: PgOptions) -> AsyncConnectionPool[Conn]:
    """A closed pool (``await pool.open()``) of autocommit connections returning dict rows.

    ``check`` pings a connection before handing it out, so after a database
    restart the dead ones are replaced instead of failing one request each.
    ``reconnect_timeout`` is short: the pool's own retries back off
    exponentially, and once they give up the next request connects at once,
    so a restarted database is used again within seconds, not minutes.
    """
    return AsyncConnectionPool(
        conninfo,
        connection_class=psycopg.AsyncConnection[psycopg.rows.DictRow],
        kwargs={"autocommit": True, "row_factory": dict_row},
        min_size=1,
        max_size=options.pool_size,
        open=False,
        check=AsyncConnectionPool.check_connection,
        timeout=options.connect_timeout,
        reconnect_timeout=options.connect_timeout,
        name="ccguard-store",
    )


def translate_error(where: str, what: str, exc: BaseException) -> StoreError:
    """A StoreError naming the database, the operation and the cause (never a parameter)."""
    if isinstance(exc, PoolTimeout | TimeoutError):
        detail = "no connection to the database within the timeout (is it down or overloaded?)"
    elif isinstance(exc, psycopg.errors.QueryCanceled):
        detail = "the statement timed out ([quarantine] statement_timeout)"
    elif isinstance(exc, psycopg.Error):
        # diag.message_primary is the server's sentence; str(exc) for client-side failures.
        primary = exc.diag.message_primary if exc.diag else None
        detail = primary or str(exc).strip().splitlines()[0]
    else:
        detail = str(exc) or type(exc).__name__
    return StoreError(f"quarantine store {where}: {what} failed: {detail}")
