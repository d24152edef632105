"""Quarantine store: held messages, the split-delivery ledger and the admin audit log."""

from __future__ import annotations

from relay.quarantine.factory import open_store
from relay.quarantine.retention import purge_once, run_retention
from relay.quarantine.sqlite import SqliteStore
from relay.quarantine.store import (
    DELETED,
    HELD,
    RELEASE_AS_IS,
    RELEASE_MODES,
    RELEASE_REWRITE,
    RELEASED,
    STATUSES,
    AuditEntry,
    MessageSummary,
    NewMessage,
    Page,
    QuarantineStats,
    QuarantineStore,
    StoredMessage,
)

__all__ = [
    "DELETED",
    "HELD",
    "RELEASED",
    "RELEASE_AS_IS",
    "RELEASE_MODES",
    "RELEASE_REWRITE",
    "STATUSES",
    "AuditEntry",
    "MessageSummary",
    "NewMessage",
    "Page",
    "QuarantineStats",
    "QuarantineStore",
    "SqliteStore",
    "StoredMessage",
    "open_store",
    "purge_once",
    "run_retention",
]
