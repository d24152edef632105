"""Prometheus metrics, health endpoints, structlog set-up and address redaction."""

from relay.observability.logging import configure_logging
from relay.observability.metrics import NO_RULE, Metrics
from relay.observability.redact import Redactor

__all__ = ["NO_RULE", "Metrics", "Redactor", "configure_logging"]
