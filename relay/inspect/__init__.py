"""Header inspection: message headers → :class:`Exposure` (pure: no I/O, no clock)."""

from relay.inspect.exposure import Exposure

__all__ = ["Exposure"]
