"""Fixtures of the actions integration tests (this folder only)."""

from tests.helpers.actions_smtp import act, client, log, metrics, store  # noqa: F401
