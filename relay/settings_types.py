"""Field types and the section base shared by every part of the settings schema."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field

__all__ = [
    "SECTION_CONFIG",
    "DomainPattern",
    "ListenAddress",
    "LogInterval",
    "MiB",
    "PositiveFloat",
    "PositiveInt",
    "check_networks",
    "parse_listen",
]

MiB = 1024 * 1024


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``"127.0.0.1:10025"`` or ``"[::1]:10025"`` into host and port."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:10025 or [::1]:10025")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number from 0 to 65535")
    return host, int(port_text)


def _check_listen(value: str) -> str:
    parse_listen(value)
    return value


def _check_domain_pattern(value: str) -> str:
    bare = value.removeprefix("*.")
    if not bare or "*" in bare or "@" in bare or bare.startswith(".") or " " in bare:
        raise ValueError(f"{value!r} is not a domain or *.domain pattern")
    return value.lower()


def _check_log_interval(value: float) -> float:
    # Under a second, a flood would get a summary per key every fraction of a second:
    # the limit would be off in all but name.
    if 0 < value < 1:
        raise ValueError("must be 0 (no limit) or at least 1 second")
    return value


ListenAddress = Annotated[str, AfterValidator(_check_listen)]
#: 0 (no limit) or 1 s to a day; ``inf`` (valid TOML) would mean silence until restart.
LogInterval = Annotated[
    float, Field(ge=0, le=86400, allow_inf_nan=False), AfterValidator(_check_log_interval)
]
DomainPattern = Annotated[str, AfterValidator(_check_domain_pattern)]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


#: Every config section: unknown keys are errors, values are frozen.
SECTION_CONFIG = ConfigDict(extra="forbid", frozen=True)


def check_networks(value: list[str]) -> list[str]:
    """Validate that every entry of ``value`` is an IP network (host bits allowed)."""
    for net in value:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as exc:
            raise ValueError(f"{net!r} is not an IP network ({exc})") from None
    return value
