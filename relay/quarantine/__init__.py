"""Quarantine store: held messages, the split-delivery ledger and the admin audit log."""

from __future__ import annotations

from relay.quarantine.factory import open_store
from relay.quarantine.retention import purge_once, run_retention
from relay.quarantine.sqlite import SqliteStore
from relay.quarantine.store import (
    CLAIM_STALE_AFTER,
    DELETED,
    HELD,
    RELEASE_AS_IS,
    RELEASE_MODES,
    RELEASE_REWRITE,
    RELEASE_SPLIT,
    RELEASED,
    STATUSES,
    AuditEntry,
    Lease,
    MessageSummary,
    NewMessage,
    Page,
    QuarantineStats,
    QuarantineStore,
    StoredMessage,
    release_key,
)

__all__ = [
    "CLAIM_STALE_AFTER",
    "DELETED",
    "HELD",
    "RELEASED",
    "RELEASE_AS_IS",
    "RELEASE_MODES",
    "RELEASE_REWRITE",
    "RELEASE_SPLIT",
    "STATUSES",
    "AuditEntry",
    "Lease",
    "MessageSummary",
    "NewMessage",
    "Page",
    "QuarantineStats",
    "QuarantineStore",
    "SqliteStore",
    "StoredMessage",
    "open_store",
    "purge_once",
    "release_key",
    "run_retention",
]
