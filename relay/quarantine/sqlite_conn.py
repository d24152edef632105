"""Opening the SQLite connection and error translation."""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from relay.errors import StoreError
from relay.quarantine.sqlite_schema import migrate

__all__ = ["connect", "retry_busy", "translate_error"]

T = TypeVar("T")

_HINTS = {
    "SQLITE_FULL": "the disk is full",
    "SQLITE_BUSY": "the database is locked by another process (busy timeout reached)",
    "SQLITE_LOCKED": "the database is locked",
    "SQLITE_READONLY": "the database file or its directory is read-only",
    "SQLITE_CANTOPEN": "cannot open the file (does the directory exist and is it writable?)",
    "SQLITE_CORRUPT": "the database file is corrupt",
    "SQLITE_NOTADB": "the file is not an SQLite database",
    "SQLITE_IOERR": "an I/O error occurred",
    "SQLITE_PERM": "permission denied",
}


def _fsync_dir(path: Path) -> None:
    # Makes the creation of the database and WAL files themselves durable.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def translate_error(path: Path, what: str, exc: BaseException) -> StoreError:
    """A StoreError naming the file, the operation, the cause and a hint."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    hint = next((h for k, h in _HINTS.items() if name.startswith(k)), "")
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) != str(path):
        detail = f"{detail}: {exc.filename}"
    text = f"quarantine store {path}: {what} failed: {detail}"
    return StoreError(f"{text} ({hint})" if hint else text)


def _prepare_directory(path: Path) -> None:
    """Create the database's directory and file; say exactly what is wrong if impossible."""
    where = f"quarantine store {path}: open failed:"
    try:
        # Held messages are personal data: new folders and files are the owner's only.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise StoreError(f"{where} {path.parent} exists but is not a directory") from None
    except OSError as exc:
        raise StoreError(f"{where} cannot create directory {path.parent}: {exc.strerror}") from None
    try:
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))  # SQLite's -wal/-shm follow
    except OSError as exc:
        # The directory exists (a read-only mount, no permission): it is not "cannot create".
        what = f"database file {path}" if path.exists() else f"directory {path.parent}"
        raise StoreError(f"{where} {what} is not writable: {exc.strerror}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise StoreError(f"{where} directory {path.parent} is not writable by this user")


def _is_busy(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))


def retry_busy(fn: Callable[[], T], within: float) -> T:
    """``fn()``, tried again on SQLITE_BUSY / SQLITE_LOCKED until ``within`` seconds passed.

    SQLite answers BUSY at once, without calling the busy handler, where
    waiting could deadlock: two connections switching a new file to WAL, or
    one reading a file while another runs its first write.  Those are exactly
    what several processes starting together on a fresh file do, so opening
    retries them (short random back-off, bounded by the busy timeout).
    """
    deadline = time.monotonic() + within
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(random.uniform(0.005, 0.05))


def _use_wal(conn: sqlite3.Connection, path: Path) -> None:
    # A concurrent opener may have switched already: then there is nothing to do.
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if str(mode).lower() != "wal":
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(
            f"quarantine store {path}: cannot use WAL mode (got {mode!r}); "
            "put the database on a local filesystem"
        )


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Open ``path`` (creating its directory), set WAL + synchronous=FULL, migrate.

    Must be called on the thread that will use the connection.  Safe when
    several processes open (and create) the same file at the same moment:
    the busy timeout is set before anything else, the WAL switch and the
    migration (one ``BEGIN IMMEDIATE`` transaction) are retried on BUSY.
    """
    _prepare_directory(path)
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.row_factory = sqlite3.Row
        retry_busy(lambda: _use_wal(conn, path), busy_timeout)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA secure_delete = ON")
        retry_busy(lambda: migrate(conn, f"quarantine store {path}"), busy_timeout)
        _fsync_dir(path.parent)
    except BaseException:
        conn.close()
        raise
    return conn
