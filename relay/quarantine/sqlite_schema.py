"""The SQLite schema, its migrations and the checks made when a file is opened.

The schema version lives in ``PRAGMA user_version``: version *n* means the
first *n* entries of :data:`MIGRATIONS` have been applied.  A later release
appends an entry (e.g. ``ALTER TABLE messages ADD COLUMN ...``); it never
edits one already released.  ``PRAGMA application_id`` marks the file as a
ccguard database so another program's SQLite file is refused, not altered.
"""

from __future__ import annotations

import sqlite3

from relay.errors import StoreError
from relay.quarantine.sqlite_tx import write_transaction

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "migrate"]

APPLICATION_ID = 0x63634751  # "ccGQ": ccguard quarantine

_V1 = (
    """
    CREATE TABLE messages (
        id            TEXT PRIMARY KEY,
        received_at   REAL NOT NULL,
        status        TEXT NOT NULL CHECK (status IN ('held', 'released', 'deleted')),
        mail_from     TEXT NOT NULL,
        sender_key    TEXT NOT NULL,
        rcpt_tos      TEXT NOT NULL,
        mail_options  TEXT NOT NULL,
        client_ip     TEXT NOT NULL,
        client_helo   TEXT NOT NULL,
        queue_id      TEXT NOT NULL,
        subject       TEXT NOT NULL,
        size          INTEGER NOT NULL,
        action        TEXT NOT NULL,
        rule          TEXT,
        reason        TEXT NOT NULL,
        exposure      TEXT NOT NULL,
        released_at   REAL,
        released_by   TEXT,
        release_mode  TEXT,
        deleted_at    REAL,
        deleted_by    TEXT,
        message       BLOB
    )
    """,
    "CREATE INDEX messages_received ON messages (received_at)",
    "CREATE INDEX messages_status_received ON messages (status, received_at)",
    "CREATE INDEX messages_sender ON messages (sender_key)",
    """
    CREATE TABLE split_ledger (
        key          TEXT NOT NULL,
        copy_id      TEXT NOT NULL,
        recorded_at  REAL NOT NULL,
        PRIMARY KEY (key, copy_id)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX split_ledger_recorded ON split_ledger (recorded_at)",
    """
    CREATE TABLE audit (
        id      INTEGER PRIMARY KEY AUTOINCREMENT,
        at      REAL NOT NULL,
        actor   TEXT NOT NULL,
        action  TEXT NOT NULL,
        target  TEXT NOT NULL,
        result  TEXT NOT NULL,
        detail  TEXT NOT NULL
    )
    """,
    "CREATE INDEX audit_target ON audit (target, id)",
    "CREATE TABLE probe (id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL)",
)

# v2: a release claims the message first (who, since when), so two admins
# (web + CLI, or two instances) can never deliver the same message twice.
_V2 = (
    "ALTER TABLE messages ADD COLUMN claimed_by TEXT",
    "ALTER TABLE messages ADD COLUMN claimed_at REAL",
)

# v3: the SMTP AUTH user that sent the message, shown to the reviewer.
_V3 = ("ALTER TABLE messages ADD COLUMN auth_user TEXT",)

# v4: leases, so that several processes on one database deliver a split
# message one attempt at a time (see relay/quarantine/sqlite_leases.py).
_V4 = (
    """
    CREATE TABLE leases (
        key         TEXT PRIMARY KEY,
        holder      TEXT,
        token       INTEGER NOT NULL,
        expires_at  REAL NOT NULL,
        taken_over  INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID
    """,
    "CREATE INDEX leases_expires ON leases (expires_at)",
)

# v5: sender self-service (release requests with their approvals, undo-hold
# timers and the self-service tokens already used); see relay/review/.
_V5 = (
    """
    CREATE TABLE release_requests (
        id                TEXT PRIMARY KEY,
        message_id        TEXT NOT NULL,
        requester         TEXT NOT NULL,
        justification     TEXT NOT NULL,
        created_at        REAL NOT NULL,
        status            TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'denied')),
        approvals_needed  INTEGER NOT NULL,
        decided_at        REAL,
        decided_by        TEXT,
        comment           TEXT NOT NULL
    )
    """,
    "CREATE UNIQUE INDEX release_requests_one_pending ON release_requests (message_id) "
    "WHERE status = 'pending'",
    "CREATE INDEX release_requests_status ON release_requests (status, created_at)",
    """
    CREATE TABLE request_approvals (
        request_id  TEXT NOT NULL,
        reviewer    TEXT NOT NULL,
        at          REAL NOT NULL,
        comment     TEXT NOT NULL,
        PRIMARY KEY (request_id, reviewer)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE delay_timers (
        message_id  TEXT PRIMARY KEY,
        deliver_at  REAL NOT NULL,
        mode        TEXT NOT NULL,
        status      TEXT NOT NULL
    ) WITHOUT ROWID
    """,
    "CREATE INDEX delay_timers_due ON delay_timers (status, deliver_at)",
    """
    CREATE TABLE used_tokens (
        token_id    TEXT PRIMARY KEY,
        message_id  TEXT NOT NULL,
        action      TEXT NOT NULL,
        used_at     REAL NOT NULL
    ) WITHOUT ROWID
    """,
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4, _V5)
SCHEMA_VERSION = len(MIGRATIONS)


def _pragma_int(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute(f"PRAGMA {name}").fetchone()
    return int(row[0])


def _check_identity(conn: sqlite3.Connection, where: str) -> int:
    """Return the file's schema version; refuse foreign or newer databases."""
    app_id = _pragma_int(conn, "application_id")
    version = _pragma_int(conn, "user_version")
    if app_id not in (0, APPLICATION_ID):
        raise StoreError(f"{where}: not a ccguard database (application_id {app_id:#x})")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{where}: database schema version {version} is newer than this ccguard "
            f"supports ({SCHEMA_VERSION}); upgrade ccguard or point "
            "[quarantine] database at another file"
        )
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        if tables:
            raise StoreError(f"{where}: an SQLite database that is not a ccguard one")
    return version


def migrate(conn: sqlite3.Connection, where: str) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction.

    ``where`` names the file in error messages.  Returns the version found
    before migrating.  Runs under ``BEGIN IMMEDIATE`` so two processes opening
    a new file at once do not both create the tables.
    """
    with write_transaction(conn):
        found = _check_identity(conn, where)
        for version in range(found, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    return found
