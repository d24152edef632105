"""One exception hierarchy; every error knows the SMTP reply it turns into."""

from __future__ import annotations

from relay import codes
from relay.codes import Reply

__all__ = [
    "CCGuardError",
    "CalendarAttendeesVisible",
    "ClaimBusyError",
    "ConfigError",
    "FourEyesError",
    "LeaseLostError",
    "MilterProtocolError",
    "QuarantineClaimedError",
    "QuarantineNotFound",
    "QuarantineStateError",
    "ReportError",
    "RequestNotFound",
    "RequestStateError",
    "StoreError",
    "UpstreamError",
    "UpstreamPermanentError",
    "UpstreamTransientError",
]


class CCGuardError(Exception):
    """Base of every error ccguard raises on purpose."""

    reply: Reply = codes.INTERNAL_ERROR

    def __init__(self, message: str = "", *, reply: Reply | None = None) -> None:
        super().__init__(message or (reply or self.reply).text)
        if reply is not None:
            self.reply = reply


class ConfigError(CCGuardError):
    """The configuration is invalid; ``problems`` lists ``(key path, reason)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {reason}" for key, reason in problems))

    def lines(self) -> list[str]:
        """One ``section.key: reason`` line per problem."""
        return [f"{key}: {reason}" for key, reason in self.problems]


class UpstreamError(CCGuardError):
    """The next hop did not take the message.

    ``kind`` is the metric label: refused, timeout, disconnect, 4xx, 5xx, tls or auth.
    """

    reply = codes.UPSTREAM_UNAVAILABLE

    def __init__(self, message: str = "", *, kind: str, reply: Reply | None = None) -> None:
        super().__init__(message, reply=reply)
        self.kind = kind


class UpstreamTransientError(UpstreamError):
    """Worth retrying later: the client gets a 4xx."""


class UpstreamPermanentError(UpstreamError):
    """The upstream refused for good: its 5xx is passed back."""


class StoreError(CCGuardError):
    """The quarantine / ledger store could not read or write."""

    reply = codes.STORE_FAILED


class ClaimBusyError(CCGuardError):
    """Another attempt held the message's claim for longer than we may wait."""

    reply = codes.SPLIT_BUSY


class LeaseLostError(StoreError):
    """A ledger write under a lease was refused: another attempt has the key now."""

    def __init__(self, key_hint: str, token: int) -> None:
        self.token = token
        super().__init__(f"lease {token} on {key_hint} was taken over; nothing recorded")


class QuarantineNotFound(StoreError):
    """No quarantined message has this id (never existed or already purged)."""

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        super().__init__(f"no quarantined message with id {message_id!r}")


class QuarantineStateError(StoreError):
    """The message is not ``held`` any more, so it cannot be released or deleted.

    ``status`` is the status it has now (``released`` or ``deleted``).
    """

    def __init__(self, message_id: str, status: str, wanted: str) -> None:
        self.message_id = message_id
        self.status = status
        super().__init__(
            f"cannot {wanted} quarantined message {message_id!r}: it is already {status}"
        )


class QuarantineClaimedError(QuarantineStateError):
    """The message is held but another release is under way (or, for
    ``mark_released``, the caller does not hold the claim).

    ``claimed_by`` is the actor holding the claim (None if nobody does).
    """

    def __init__(self, message_id: str, claimed_by: str | None, wanted: str) -> None:
        super().__init__(message_id, "being released", wanted)
        self.claimed_by = claimed_by
        if claimed_by is None:
            self.args = (f"cannot {wanted} quarantined message {message_id!r}: not claimed",)
        else:
            self.args = (
                f"cannot {wanted} quarantined message {message_id!r}: "
                f"it is being released by {claimed_by}",
            )


class CalendarAttendeesVisible(CCGuardError):
    """A release with recipients hidden was asked for a calendar invitation whose
    attendee list shows external (or unreadable) attendees: rewriting the
    headers cannot hide them, so nothing is delivered.

    ``code`` is the admin API's error code; ``external`` the number of external
    attendees, ``truncated`` whether part of the calendar data could not be read.
    """

    code = "calendar_attendees_visible"

    def __init__(self, message_id: str, external: int, truncated: bool) -> None:
        self.message_id = message_id
        self.external = external
        self.truncated = truncated
        seen = (
            f"{external} external attendee(s)"
            if external
            else "calendar data that could not be read"
        )
        if external and truncated:
            seen += " and calendar data that could not be read"
        super().__init__(
            f"message {message_id} is a calendar invitation showing {seen}; hiding the "
            "recipients cannot hide its attendee list, so it was not released. "
            "Release it as sent (as-is) only if every attendee may see the others, or delete it."
        )


class MilterProtocolError(CCGuardError):
    """The MTA sent something the milter protocol does not allow (or a frame larger
    than ccguard accepts): the connection is closed and the MTA applies its
    ``milter_default_action`` (``tempfail`` as documented)."""

    def __init__(self, reason: str, kind: str = "protocol") -> None:
        super().__init__(reason)
        self.kind = kind


class RequestNotFound(StoreError):
    """No release request has this id."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        super().__init__(f"no release request with id {request_id!r}")


class RequestStateError(StoreError):
    """The release request is not ``pending`` any more (or, when one is made, the
    message already has a pending one); ``status`` is what it is now."""

    def __init__(self, request_id: str, status: str, wanted: str) -> None:
        self.request_id = request_id
        self.status = status
        super().__init__(f"cannot {wanted} release request {request_id!r}: it is {status}")


class FourEyesError(CCGuardError):
    """A reviewer may not approve this request: they made it, or they approved it
    already and the rule wants a second, different reviewer.  ``code`` is the
    API's error code (answered with 403)."""

    code = "four_eyes"

    def __init__(self, request_id: str, reviewer: str, why: str) -> None:
        self.request_id = request_id
        self.reviewer = reviewer
        self.why = why
        super().__init__(f"release request {request_id}: {why}")


class ReportError(CCGuardError):
    """The evidence report could not be made (e.g. the PDF renderer is not installed)."""
