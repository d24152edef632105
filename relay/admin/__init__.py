"""Quarantine review for admins: web UI + JSON API (Starlette) and the users file."""

from __future__ import annotations

from relay.admin.app import CONTENT_SECURITY_POLICY, create_admin_app
from relay.admin.review import MODE_AS_IS, MODE_HIDDEN, EventLog, Releaser, Review
from relay.credentials.users import UserDB, UsersFileError

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "MODE_AS_IS",
    "MODE_HIDDEN",
    "EventLog",
    "Releaser",
    "Review",
    "UserDB",
    "UsersFileError",
    "create_admin_app",
]
