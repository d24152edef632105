"""Start-up warnings about settings that work but surprise operators."""

from __future__ import annotations

import asyncio
from typing import Any

from relay.credentials.users import UserDB, UsersFileError
from relay.settings import AdminSettings, SmtpAuthSettings, SmtpSettings
from relay.smtp.access import NetworkAccess
from relay.smtp.auth import SmtpAuthenticator

__all__ = ["event_loop_name", "warn_proxy_overlap", "warn_smtp_auth", "warn_without_admins"]


def warn_without_admins(admin: AdminSettings, log: Any) -> None:
    """Warn when the review UI is on but nobody can log in to it yet."""
    if not admin.enabled:
        return
    try:
        users = UserDB(admin.users_file).names()
    except UsersFileError as exc:
        log.warning("admin_users_file_unreadable", error=str(exc))
        return
    if not users:
        log.warning(
            "no_admin_users",
            detail="nobody can log in to the review UI yet: "
            "run `ccguard admin add-user NAME` with the same --config",
        )


def warn_smtp_auth(
    auth: SmtpAuthSettings, authenticator: SmtpAuthenticator | None, log: Any
) -> None:
    """Warn when SMTP AUTH has no users yet, or allows passwords in clear."""
    if authenticator is not None and not authenticator.users.names():
        log.warning(
            "no_smtp_users",
            detail="nobody can log in with SMTP AUTH yet: run "
            "`ccguard smtp-user add NAME` with the same --config",
        )
    if auth.users_file and auth.allow_plaintext:
        log.warning(
            "smtp auth allowed in plaintext",
            detail="[smtp.auth] allow_plaintext = true sends passwords in clear: "
            "for loopback tests only",
        )


def warn_proxy_overlap(smtp: SmtpSettings, log: Any) -> None:
    """Warn when a PROXY-trusted balancer may also send mail itself."""
    if not smtp.proxy_protocol:
        return
    overlap = NetworkAccess(smtp.allowed_networks).overlapping(smtp.proxy_trusted)
    if overlap:
        log.warning(
            "proxy_trusted overlaps allowed_networks",
            networks=overlap,
            detail="list only the load balancers' own addresses in proxy_trusted "
            "(e.g. 10.0.0.5/32); their health checks (PROXY LOCAL) are refused at MAIL",
        )


def event_loop_name() -> str:
    """ "uvloop" or "asyncio": which loop ``[smtp] event_loop`` gave this process."""
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"
