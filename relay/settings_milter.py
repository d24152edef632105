"""The milter front's section of the settings schema: [milter].

Re-exported by :mod:`relay.settings`; import it from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, field_validator

from relay.errors import ConfigError
from relay.settings_types import SECTION_CONFIG, PositiveFloat, check_networks, parse_listen

__all__ = ["MilterListen", "MilterSettings", "parse_milter_listen", "require_a_front"]


@dataclass(frozen=True, slots=True)
class MilterListen:
    """Where the milter listens: ``host``/``port`` for ``inet:``, ``path`` for ``unix:``."""

    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def is_unix(self) -> bool:
        return bool(self.path)


def parse_milter_listen(value: str) -> MilterListen:
    """Read Postfix's own notation: ``inet:HOST:PORT``, ``inet6:[::1]:PORT`` or ``unix:/PATH``."""
    kind, sep, rest = value.partition(":")
    if sep and kind == "unix":
        if not rest.startswith("/"):
            raise ValueError("unix: needs an absolute path, e.g. unix:/run/ccguard/milter.sock")
        return MilterListen(path=rest)
    if sep and kind in ("inet", "inet6"):
        host, port = parse_listen(rest)
        return MilterListen(host=host, port=port)
    raise ValueError(
        "expected inet:HOST:PORT (e.g. inet:127.0.0.1:8890) or unix:/PATH "
        "(e.g. unix:/run/ccguard/milter.sock)"
    )


def _check(value: str) -> str:
    if value:
        parse_milter_listen(value)
    return value


class MilterSettings(BaseModel):
    """The milter listener Postfix (``smtpd_milters``) or Sendmail (``INPUT_MAIL_FILTER``) calls."""

    model_config = SECTION_CONFIG

    #: ``inet:127.0.0.1:8890`` or ``unix:/run/ccguard/milter.sock``; empty: no milter.
    listen: Annotated[str, AfterValidator(_check)] = ""
    #: Permission bits of a ``unix:`` socket (octal text): who may connect to it.
    socket_mode: str = "0660"
    #: ``inet:`` peers allowed to connect (the MTA's addresses); any other peer is
    #: closed at once.  A milter peer can make ccguard send split copies through
    #: ``[upstream]``, so this is ccguard's open-relay guard for the milter front.
    allowed_peers: list[str] = ["127.0.0.0/8", "::1/128"]
    #: Seconds a connection may stay silent between two milter commands.
    idle_timeout: PositiveFloat = 600.0
    #: Seconds between progress messages while an action runs (a split delivering
    #: many copies), so Postfix's ``milter_content_timeout`` does not expire.
    progress_interval: PositiveFloat = 10.0

    @field_validator("allowed_peers")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return check_networks(value)

    @field_validator("socket_mode")
    @classmethod
    def _octal(cls, value: str) -> str:
        try:
            mode = int(value, 8)
        except ValueError:
            raise ValueError(f"{value!r} is not an octal mode such as 0660") from None
        if not 0 <= mode <= 0o777:
            raise ValueError(f"{value!r} is not a permission mode from 0000 to 0777")
        return value

    @property
    def address(self) -> MilterListen | None:
        """The parsed ``listen`` (None when the milter is off)."""
        return parse_milter_listen(self.listen) if self.listen else None

    @property
    def mode(self) -> int:
        """``socket_mode`` as a number."""
        return int(self.socket_mode, 8)


def require_a_front(smtp_listen: str, milter_listen: str) -> None:
    """Raise :class:`ConfigError` when neither ``[smtp] listen`` nor ``[milter] listen``
    is set: such a ccguard would serve nothing."""
    if not smtp_listen and not milter_listen:
        raise ConfigError([("smtp.listen", "empty, and so is milter.listen: nothing to serve")])
