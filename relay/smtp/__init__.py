"""The SMTP front end (aiosmtpd): sessions, access control, limits."""

from relay.smtp.context import FrontContext, SessionRegistry
from relay.smtp.listener import SmtpListener
from relay.smtp.pipeline import (
    Decider,
    Dispatcher,
    InspectingDecider,
    SmtpMetrics,
)
from relay.smtp.server import GuardSMTP

__all__ = [
    "Decider",
    "Dispatcher",
    "FrontContext",
    "GuardSMTP",
    "InspectingDecider",
    "SessionRegistry",
    "SmtpListener",
    "SmtpMetrics",
]
