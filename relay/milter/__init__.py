"""The milter front: Postfix (``smtpd_milters``) or Sendmail call ccguard during their
own SMTP session; the same inspection, policy, actions and quarantine as the SMTP front.
See docs/milter.md."""

from relay.milter.context import MilterContext
from relay.milter.server import MilterListener

__all__ = ["MilterContext", "MilterListener"]
