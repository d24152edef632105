"""Choose the quarantine backend from ``[quarantine] database``."""

from __future__ import annotations

import re
from collections.abc import Callable

from relay.errors import ConfigError
from relay.quarantine.pg import PgStore
from relay.quarantine.pg_conn import PgOptions
from relay.quarantine.sqlite import SqliteStore
from relay.quarantine.store import QuarantineStore
from relay.settings import QuarantineSettings

__all__ = ["is_postgres", "open_store", "pg_options"]

_KEY = "quarantine.database"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def pg_options(settings: QuarantineSettings) -> PgOptions:
    """The PostgreSQL connection settings of ``[quarantine]``."""
    return PgOptions(
        password_file=settings.password_file,
        pool_size=settings.pool_size,
        connect_timeout=settings.connect_timeout,
        statement_timeout=settings.statement_timeout,
    )


def is_postgres(database: str) -> bool:
    """Whether ``database`` is a ``postgresql://`` (or ``postgres://``) URL."""
    match = _SCHEME.match(database.strip())
    return match is not None and match.group(1).lower() in ("postgresql", "postgres")


def open_store(
    settings: QuarantineSettings,
    *,
    migrate: bool = True,
    clock: Callable[[], float] | None = None,
) -> QuarantineStore:
    """The store named by ``settings.database`` (not yet opened: ``await store.open()``).

    A plain path (relative to the working directory) is an SQLite file whose
    directory is created on open.  A ``postgresql://`` URL is a PostgreSQL
    database (libpq syntax).  ``migrate=False``: a PostgreSQL store refuses
    to open a schema that is not current instead of migrating it.  ``clock``
    (tests only) replaces the store's clock.
    """
    database = settings.database.strip()
    if not database:
        raise ConfigError([(_KEY, "must name an SQLite file, e.g. var/ccguard.db")])
    match = _SCHEME.match(database)
    if match is None:
        return SqliteStore(database) if clock is None else SqliteStore(database, clock=clock)
    scheme = match.group(1).lower()
    if scheme in ("postgresql", "postgres"):
        return PgStore(database, pg_options(settings), migrate=migrate, clock=clock)
    hint = "use an SQLite file path or a postgresql:// URL"
    raise ConfigError([(_KEY, f"unknown database URL scheme {scheme!r}; {hint}")])
