"""Delivery to the next hop (aiosmtplib), with a small connection pool."""

from relay.upstream.client import (
    DeliveryResult,
    UpstreamClient,
    UpstreamMetrics,
    UpstreamTransaction,
)

__all__ = ["DeliveryResult", "UpstreamClient", "UpstreamMetrics", "UpstreamTransaction"]
