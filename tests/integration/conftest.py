"""Fixtures of the listener TLS/AUTH tests, shared by every module here that asks for them."""

from tests.helpers.smtp_auth import log, pki, users_file  # noqa: F401
