"""The SMTP front end (aiosmtpd): sessions, access control, limits."""

from relay.smtp.context import FrontContext, SessionRegistry
from relay.smtp.pipeline import (
    Decider,
    Dispatcher,
    InspectingDecider,
    SmtpMetrics,
)
from relay.smtp.server import GuardSMTP, SmtpListener

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
