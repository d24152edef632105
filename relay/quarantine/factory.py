"""Choose the quarantine backend from ``[quarantine] database``."""

from __future__ import annotations

import re

from relay.errors import ConfigError
from relay.quarantine.sqlite import SqliteStore
from relay.quarantine.store import QuarantineStore
from relay.settings import QuarantineSettings

__all__ = ["open_store"]

_KEY = "quarantine.database"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def open_store(settings: QuarantineSettings) -> QuarantineStore:
    """The store named by ``settings.database`` (not yet opened: ``await store.open()``).

    A plain path (relative to the working directory) is an SQLite file whose
    directory is created on open.  ``postgresql://`` URLs are reserved for the
    PostgreSQL backend and refused with a :class:`ConfigError` for now.
    """
    database = settings.database.strip()
    if not database:
        raise ConfigError([(_KEY, "must name an SQLite file, e.g. var/ccguard.db")])
    match = _SCHEME.match(database)
    if match is None:
        return SqliteStore(database)
    scheme = match.group(1).lower()
    if scheme in ("postgresql", "postgres"):
        raise ConfigError(
            [(_KEY, "the PostgreSQL backend is not supported yet; use an SQLite file path")]
        )
    raise ConfigError([(_KEY, f"unknown database URL scheme {scheme!r}; use an SQLite file path")])
