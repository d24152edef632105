"""The configuration file's schema and how it is loaded; nothing else.

A TOML file (``--config PATH`` or ``CCGUARD_CONFIG``) is read first; every value
can then be overridden by an environment variable ``CCGUARD_<SECTION>__<KEY>``
(lists and tables as JSON).  Unknown keys, wrong types and impossible values
raise :class:`relay.errors.ConfigError` listing ``section.key: reason`` lines.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from relay.errors import ConfigError
from relay.settings_milter import MilterSettings
from relay.settings_review import ReviewSettings
from relay.settings_smtp import LimitsSettings, SmtpAuthSettings, SmtpSettings
from relay.settings_types import (
    SECTION_CONFIG,
    DomainPattern,
    ListenAddress,
    LogInterval,
    MiB,
    PositiveFloat,
    PositiveInt,
    check_networks,
    parse_listen,
)

__all__ = [
    "Action",
    "AdminSettings",
    "InspectSettings",
    "LimitsSettings",
    "ListenAddress",
    "LoggingSettings",
    "MetricsSettings",
    "MilterSettings",
    "NotificationSettings",
    "OrganisationSettings",
    "PolicySettings",
    "QuarantineSettings",
    "ReviewSettings",
    "RuleSettings",
    "Settings",
    "SmtpAuthSettings",
    "SmtpSettings",
    "SplitSettings",
    "UpstreamSettings",
    "load_settings",
    "parse_listen",
]


class _Section(BaseModel):
    model_config = SECTION_CONFIG


CONFIG_ENV = "CCGUARD_CONFIG"
ENV_PREFIX = "CCGUARD_"
_JSON_HINT = "lists and tables must be JSON, e.g. CCGUARD_SMTP__ALLOWED_NETWORKS='[\"10.0.0.0/8\"]'"


class Action(StrEnum):
    """What ccguard does with a message."""

    PASS = "pass"
    TAG = "tag"
    REWRITE = "rewrite"
    SPLIT = "split"
    REJECT = "reject"
    QUARANTINE = "quarantine"


class UpstreamSettings(_Section):
    """The next hop every accepted message is handed to."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    starttls: Literal["off", "opportunistic", "required"] = "opportunistic"
    timeout: PositiveFloat = 60.0
    connect_timeout: PositiveFloat = 10.0
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    #: Idle connections kept at most; the pool holds as many as transactions ran at
    #: once in the last ``pool_idle_timeout`` seconds, up to this (docs/throughput.md).
    pool_size: Annotated[int, Field(ge=0, le=1000)] = 100
    #: Seconds an idle upstream connection is kept open before a QUIT.
    pool_idle_timeout: PositiveFloat = 30.0
    helo_name: str | None = None

    @model_validator(mode="after")
    def _auth_pair(self) -> UpstreamSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password must be set together")
        return self


class OrganisationSettings(_Section):
    """Which domains are ours (internal); everything else is external."""

    internal_domains: list[DomainPattern] = []


class InspectSettings(_Section):
    """Limits of the header inspection."""

    max_header_bytes: PositiveInt = 1 * MiB
    #: Most bytes of calendar parts (as transmitted) decoded and parsed per message.
    max_calendar_bytes: PositiveInt = 1 * MiB
    #: Bounds of the MIME walk that looks for calendar parts.
    max_mime_parts: PositiveInt = 256
    max_mime_depth: PositiveInt = 8


class RuleSettings(_Section):
    """One policy rule; all conditions given must hold for it to match."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    action: Action
    min_visible_external: Annotated[int, Field(ge=0)] | None = None
    min_external_domains: Annotated[int, Field(ge=0)] | None = None
    min_visible_total: Annotated[int, Field(ge=0)] | None = None
    min_unparseable: Annotated[int, Field(ge=0)] | None = None
    header_too_large: bool | None = None
    calendar: bool | None = None
    calendar_truncated: bool | None = None
    senders: list[str] = []
    exempt_senders: list[str] = []
    exempt_recipients: list[str] = []
    #: SMTP AUTH users the rule applies to: names, "*" (anyone logged in) or
    #: "-" (clients that did not log in); empty: everybody.
    auth_users: list[str] = []
    #: Sender self-service: releasing "as sent" needs two different reviewers.
    four_eyes: bool = False
    #: An undo hold (quarantine rules only): held this many minutes, then delivered
    #: as ``after_delay`` says unless the sender or a reviewer acted first.
    hold_minutes: Annotated[int, Field(ge=1, le=24 * 60)] | None = None
    after_delay: Literal["as-is", "hidden"] = "hidden"

    @model_validator(mode="after")
    def _hold_needs_quarantine(self) -> RuleSettings:
        if self.hold_minutes is not None and self.action is not Action.QUARANTINE:
            raise ValueError('hold_minutes needs action = "quarantine" (the message is held)')
        if self.four_eyes and self.hold_minutes is not None and self.after_delay == "as-is":
            raise ValueError(
                'four_eyes with hold_minutes needs after_delay = "hidden": sending as written '
                "takes two reviewers' approval, a timer cannot give it"
            )
        return self


class PolicySettings(_Section):
    """Ordered rules; the first that matches wins, none matching means pass."""

    mode: Literal["enforce", "monitor"] = "enforce"
    #: What a rewrite or split rule does instead when calendar attendees are exposed.
    calendar_fallback: Literal["quarantine", "reject", "tag"] = "quarantine"
    rules: list[RuleSettings] = []

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[RuleSettings]) -> list[RuleSettings]:
        seen: set[str] = set()
        for rule in rules:
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return rules


class QuarantineSettings(_Section):
    """Where held messages and the split-delivery ledger live."""

    database: str = "var/ccguard.db"
    retention_days: PositiveFloat = 30.0
    purge_interval: PositiveFloat = 3600.0
    #: PostgreSQL only: a file holding the password (else PGPASSWORD or ~/.pgpass).
    password_file: str | None = None
    #: PostgreSQL only: most connections this process keeps to the database.
    pool_size: Annotated[int, Field(ge=1, le=100)] = 5
    #: PostgreSQL only: seconds to connect, or to wait for a free pooled connection.
    connect_timeout: PositiveFloat = 5.0
    #: PostgreSQL only: seconds one statement (lock waits included) may run.
    statement_timeout: PositiveFloat = 10.0
    #: Seconds a split attempt's or a release's claim lasts unless renewed (the holder
    #: renews it every third of that while it works): how long a crashed holder blocks.
    claim_lease: Annotated[float, Field(ge=1.0, le=600.0)] = 30.0
    #: Seconds a split attempt waits for another attempt's claim before answering 451.
    claim_wait: Annotated[float, Field(ge=0.0, le=120.0)] = 15.0


class SplitSettings(_Section):
    """The split action's exactly-once ledger."""

    ledger_retention_hours: PositiveFloat = 120.0


class NotificationSettings(_Section):
    """Notices to internal senders whose mail was held (or changed)."""

    enabled: bool = False
    from_address: str = Field("postmaster@localhost", alias="from")
    on_actions: list[Action] = [Action.QUARANTINE]
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AdminSettings(_Section):
    """The review web UI and JSON API."""

    enabled: bool = True
    listen: ListenAddress = "127.0.0.1:8025"
    users_file: str = "var/admin-users.json"
    session_secret: str | None = None
    #: A file holding the session key (created with a random key if missing); instances
    #: sharing it accept each other's session cookies.  Wins over ``session_secret``.
    session_key_file: str | None = None
    session_max_age: PositiveInt = 8 * 3600
    tls_cert: str | None = None
    tls_key: str | None = None
    #: Reverse proxies whose X-Forwarded-For is believed (client IP for throttle and audit).
    trusted_proxies: list[str] = []
    #: Largest request body (JSON or form) the admin server reads; larger ones get 413.
    max_request_bytes: Annotated[int, Field(ge=1024, le=MiB)] = 8192

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        return check_networks(value)


class MetricsSettings(_Section):
    """Prometheus /metrics and health endpoints; served by admin unless ``listen`` is set."""

    listen: ListenAddress | None = None
    readiness_timeout: PositiveFloat = 2.0


class LoggingSettings(_Section):
    """structlog output."""

    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"
    hash_key: str | None = None
    #: Lines of connections turned away at the door (refused, failed TLS handshake,
    #: bad PROXY header) per event and reason and interval (0, or 1 s to a day); then one
    #: summary at the lines' level. 0: no limit. Lines below ``level`` are not counted.
    door_log_burst: Annotated[int, Field(ge=0)] = 100
    door_log_interval: LogInterval = 60.0


class Settings(BaseSettings):
    """The whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix="CCGUARD_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    smtp: SmtpSettings = SmtpSettings()
    milter: MilterSettings = MilterSettings()
    limits: LimitsSettings = LimitsSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    organisation: OrganisationSettings = OrganisationSettings()
    inspect: InspectSettings = InspectSettings()
    policy: PolicySettings = PolicySettings()
    quarantine: QuarantineSettings = QuarantineSettings()
    split: SplitSettings = SplitSettings()
    notifications: NotificationSettings = NotificationSettings.model_validate({})
    admin: AdminSettings = AdminSettings()
    review: ReviewSettings = ReviewSettings()
    metrics: MetricsSettings = MetricsSettings()
    logging: LoggingSettings = LoggingSettings()

    @model_validator(mode="after")
    def _budget_holds_a_message(self) -> Settings:
        if self.limits.max_inflight_bytes < self.smtp.max_message_size:
            raise ValueError(
                f"limits.max_inflight_bytes ({self.limits.max_inflight_bytes}) is smaller "
                f"than smtp.max_message_size ({self.smtp.max_message_size}): a message of "
                "the largest size allowed could never be accepted"
            )
        return self

    @model_validator(mode="after")
    def _error_sleep_within_the_command_timeout(self) -> Settings:
        # The sleep runs before the reply, while the idle timer runs: at idle_timeout
        # the client would get "421 Idle too long" for ccguard's own wait.
        if self.limits.error_sleep >= self.smtp.idle_timeout:
            raise ValueError(
                f"limits.error_sleep ({self.limits.error_sleep} s) must be shorter than "
                f"smtp.idle_timeout ({self.smtp.idle_timeout} s): the wait before an "
                "error reply would run into the idle timeout"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init kwargs; the environment must win over it.
        return (env_settings, init_settings)


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors():
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown key"
        problems.append((_key_path(tuple(err["loc"])), reason))
    return problems


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError([(str(path), "file not found")]) from None
    except OSError as exc:
        raise ConfigError([(str(path), f"cannot read: {exc.strerror}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(str(path), f"not valid TOML: {exc}")]) from None


def config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    """The config file to use: ``explicit``, else ``$CCGUARD_CONFIG``, else none."""
    chosen = explicit if explicit is not None else os.environ.get(CONFIG_ENV)
    return Path(chosen) if chosen else None


def _environment_problems(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """``CCGUARD_*`` variables that name no section: a typo must not pass silently."""
    problems = []
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX) or name.upper() == CONFIG_ENV:
            continue
        section = name[len(ENV_PREFIX) :].split("__", 1)[0].lower()
        if section not in Settings.model_fields:
            problems.append((f"environment {name}", "no such section"))
    return problems


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Load and validate the configuration; raise :class:`ConfigError` on any problem.

    With no file (neither ``path`` nor ``$CCGUARD_CONFIG``) the built-in defaults
    are used, still overridable by the environment.
    """
    chosen = config_path(path)
    data = _read_toml(chosen) if chosen is not None else {}
    problems = _environment_problems(os.environ)
    if problems:
        raise ConfigError(problems)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None
    except SettingsError as exc:  # an environment value that is not valid JSON
        field = str(exc).split('"')[1] if '"' in str(exc) else "environment"
        raise ConfigError(
            [(f"environment CCGUARD_{field.upper()}__*", f"{exc}; {_JSON_HINT}")]
        ) from None
