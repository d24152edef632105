"""The SMTP front's sections of the settings schema: [smtp], [smtp.auth], [limits].

Re-exported by :mod:`relay.settings`; import them from there.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from relay.settings_types import (
    SECTION_CONFIG,
    ListenAddress,
    MiB,
    PositiveFloat,
    PositiveInt,
    check_networks,
    parse_listen,
)

__all__ = ["LimitsSettings", "SmtpAuthSettings", "SmtpSettings", "StartTls"]


def _listen_or_empty(value: str) -> str:
    if value:
        parse_listen(value)
    return value


class _Section(BaseModel):
    model_config = SECTION_CONFIG


class SmtpAuthSettings(_Section):
    """SMTP AUTH (PLAIN, LOGIN) for clients outside ``allowed_networks``."""

    #: Users file (same format and tools as the admin users); unset: no AUTH.
    users_file: str | None = None
    #: Demand AUTH from every client, even from ``allowed_networks``.
    required: bool = False
    #: Offer AUTH without TLS: for loopback tests only (a warning is logged at start).
    allow_plaintext: bool = False
    #: User name (or ``"*"`` for every other user) → MAIL FROM patterns it may use.
    sender_patterns: dict[str, list[str]] = {}
    #: Failed AUTH attempts per minute from all clients together; beyond it every
    #: attempt gets 454 without a password check until the oldest is a minute old.
    max_failures_per_minute: PositiveInt = 120

    @model_validator(mode="after")
    def _needs_users(self) -> SmtpAuthSettings:
        if self.users_file is None and (self.required or self.sender_patterns):
            raise ValueError("required and sender_patterns need users_file")
        return self


StartTls = Literal["off", "offer", "required"]


class SmtpSettings(_Section):
    """The SMTP listener that clients send to."""

    #: Empty: no SMTP listener (the milter front alone, ``[milter] listen``).
    listen: Annotated[str, AfterValidator(_listen_or_empty)] = "127.0.0.1:10025"
    #: Server certificate chain and private key (PEM), re-read on SIGHUP.
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Default: "offer" with a certificate, "off" without.
    starttls: StartTls = "off"
    #: Optional implicit-TLS listener (RFC 8314 "submissions"), e.g. "127.0.0.1:10465".
    tls_listen: ListenAddress | None = None
    #: Seconds an implicit-TLS client has to finish its handshake (asyncio's default: 60).
    tls_handshake_timeout: Annotated[float, Field(gt=0, le=300)] = 30.0
    auth: SmtpAuthSettings = SmtpAuthSettings()
    hostname: str = "ccguard.localdomain"
    allowed_networks: list[str] = ["127.0.0.0/8", "::1/128"]
    max_message_size: PositiveInt = 50 * MiB
    max_recipients: PositiveInt = 1000
    idle_timeout: PositiveFloat = 300.0
    transaction_timeout: PositiveFloat = 600.0
    shutdown_grace: Annotated[float, Field(ge=0)] = 30.0
    #: Listen queue length; the kernel caps it at net.core.somaxconn.
    backlog: Annotated[int, Field(ge=1, le=65535)] = 1024
    #: Expect a PROXY v1/v2 header (HAProxy ``send-proxy-v2``) from a ``proxy_trusted`` peer.
    proxy_protocol: bool = False
    proxy_trusted: list[str] = []
    #: Seconds a trusted proxy has to send the header (aiosmtpd warns below 3).
    proxy_timeout: Annotated[float, Field(ge=3)] = 10.0
    #: Worker processes sharing the SMTP port (SO_REUSEPORT) under one supervisor;
    #: "auto" = one per CPU this process may run on (README, Tuning).
    workers: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = 1
    #: "auto": uvloop when it is installed (``pip install ccguard[fast]``), else asyncio's.
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"

    @property
    def worker_count(self) -> int:
        """``workers`` as a number ("auto": the CPUs this process may use)."""
        if self.workers == "auto":
            return max(1, len(os.sched_getaffinity(0)))
        return self.workers

    @field_validator("allowed_networks", "proxy_trusted")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return check_networks(value)

    @model_validator(mode="before")
    @classmethod
    def _default_starttls(cls, data: Any) -> Any:
        if isinstance(data, dict) and "starttls" not in data:
            return {**data, "starttls": "offer" if data.get("tls_cert") else "off"}
        return data

    @model_validator(mode="after")
    def _tls_consistent(self) -> SmtpSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be set together")
        if self.tls_cert is None and self.starttls != "off":
            raise ValueError(f'starttls = "{self.starttls}" needs tls_cert and tls_key')
        if self.tls_cert is None and self.tls_listen is not None:
            raise ValueError("tls_listen needs tls_cert and tls_key")
        auth = self.auth
        if auth.users_file and not auth.allow_plaintext and not self.tls_enabled:
            raise ValueError(
                "auth.users_file: AUTH is offered only after TLS; set tls_cert and tls_key "
                "(or auth.allow_plaintext = true on loopback tests)"
            )
        return self

    @property
    def tls_enabled(self) -> bool:
        """True when some listener speaks TLS (STARTTLS offered or implicit TLS)."""
        return self.tls_cert is not None and (self.starttls != "off" or bool(self.tls_listen))

    @model_validator(mode="after")
    def _proxy_needs_trusted(self) -> SmtpSettings:
        if self.proxy_protocol and not self.proxy_trusted:
            raise ValueError(
                "proxy_protocol = true needs proxy_trusted (the load balancers' networks)"
            )
        return self


class LimitsSettings(_Section):
    """Abuse and resource limits of the SMTP front (Postfix anvil / postscreen style)."""

    max_connections: PositiveInt = 1000
    max_connections_per_ip: PositiveInt = 50
    #: MAIL FROM commands per minute per authenticated user, else per client IP; unset = off.
    messages_per_minute: PositiveInt | None = None
    rate_exempt_networks: list[str] = []
    #: Seconds to wait after a ``220-`` first greeting line; a client talking in that
    #: window is refused as an early talker.  0 turns the test off.
    pregreet_wait: Annotated[float, Field(ge=0, le=30)] = 0.0
    #: Message bytes being received or processed at once, summed over every
    #: transaction of the process; more gets ``452 4.3.1`` (README, [limits]).
    #: 256 MiB: a message costs about 1.5x its size while it is processed, so the
    #: process stays under ~450 MiB, a quarter of a 2 GiB machine.
    max_inflight_bytes: PositiveInt = 256 * MiB
    #: Protocol faults a session may make without a message accepted (Postfix's
    #: smtpd_*_error_limit; never verdicts or the upstream's replies): over
    #: ``soft_error_limit`` each error reply waits ``error_sleep`` seconds; at
    #: ``hard_error_limit`` ``421 4.7.0`` and the connection is closed.  Over
    #: ``junk_command_limit`` NOOP, RSET, VRFY and HELP count as errors.  Which
    #: replies count: docs/front-door.md.  0 = no limit.
    soft_error_limit: Annotated[int, Field(ge=0)] = 10
    error_sleep: Annotated[float, Field(ge=0, le=60)] = 1.0
    hard_error_limit: Annotated[int, Field(ge=0)] = 20
    junk_command_limit: Annotated[int, Field(ge=0)] = 100
    #: ``452 4.5.3 Too many recipients`` replies in one transaction that do not count
    #: as errors (Postfix's smtpd_recipient_overshoot_limit); each one beyond counts.
    recipient_overshoot_limit: Annotated[int, Field(ge=0)] = 1000

    @field_validator("rate_exempt_networks")
    @classmethod
    def _exempt(cls, value: list[str]) -> list[str]:
        return check_networks(value)
