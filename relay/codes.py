"""Every SMTP reply ccguard gives itself, in one place.

A :class:`Reply` carries the basic code, the RFC 3463 enhanced status code and
the text; ``str(reply)`` is the wire form aiosmtpd expects from handlers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "ACCESS_DENIED_CONNECT",
    "AUTH_BUSY",
    "AUTH_INVALID",
    "AUTH_NEEDS_TLS",
    "AUTH_NOT_ENABLED",
    "AUTH_OK",
    "AUTH_REQUIRED",
    "AUTH_THROTTLED",
    "COMMAND_TOO_LONG",
    "EARLY_TALKER",
    "HELD_FOR_REVIEW",
    "IDLE_TIMEOUT",
    "INSUFFICIENT_STORAGE",
    "INTERNAL_ERROR",
    "LINE_TOO_LONG",
    "MESSAGE_TOO_BIG",
    "NEEDS_SMTPUTF8",
    "NO_8BITMIME",
    "OK",
    "PROXY_HEALTH_CHECK",
    "RATE_LIMITED",
    "REJECT_EXPOSURE",
    "REJECT_UNCHECKABLE",
    "RSET_OK",
    "SENDER_NOT_OWNED",
    "SENDER_OK",
    "SHUTTING_DOWN",
    "SPLIT_BUSY",
    "SPLIT_DELIVERED",
    "STARTTLS_FIRST",
    "STORE_FAILED",
    "TOO_MANY_CONNECTIONS",
    "TOO_MANY_ERRORS",
    "TOO_MANY_HEADER_EDITS",
    "TOO_MANY_RECIPIENTS",
    "TRANSACTION_TIMEOUT",
    "UPSTREAM_AUTH_FAILED",
    "UPSTREAM_TEMPFAIL",
    "UPSTREAM_TIMEOUT",
    "UPSTREAM_UNAVAILABLE",
    "Reply",
]


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply: ``code`` (e.g. 451), ``status`` (e.g. ``"4.3.0"``) and ``text``."""

    code: int
    status: str
    text: str

    def __str__(self) -> str:
        prefix = f"{self.code} {self.status} " if self.status else f"{self.code} "
        return prefix + self.text

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def with_text(self, text: str) -> Reply:
        """The same code and status with another text."""
        return replace(self, text=text)


OK = Reply(250, "2.0.0", "OK")
SHUTTING_DOWN = Reply(421, "4.3.2", "Service shutting down, try again later")

ACCESS_DENIED_CONNECT = Reply(554, "5.7.1", "Access denied: client network not allowed to relay")

# TLS and SMTP AUTH (RFC 3207, RFC 4954); some are aiosmtpd's own, listed so the
# README's reply table has one source.
STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
AUTH_OK = Reply(235, "2.7.0", "Authentication successful")
AUTH_INVALID = Reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_NEEDS_TLS = Reply(538, "5.7.11", "Encryption required for requested authentication mechanism")
AUTH_THROTTLED = Reply(454, "4.7.0", "Too many failed authentication attempts, try again later")
AUTH_BUSY = Reply(454, "4.7.0", "Temporary authentication failure, try again later")
SENDER_NOT_OWNED = Reply(553, "5.7.1", "Sender address not owned by user")
AUTH_NOT_ENABLED = Reply(503, "5.5.1", "Authentication not enabled")  # Postfix's words

# Abuse limits ([limits]): connection counts, message rate, early talkers.
TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "Too many connections, try again later")
RATE_LIMITED = Reply(451, "4.7.1", "Rate limit exceeded, try again later")
EARLY_TALKER = Reply(554, "5.5.0", "Protocol error: client sent data before the greeting")
# [limits] hard_error_limit: Postfix's "421 4.7.0 <host> Error: too many errors".
TOO_MANY_ERRORS = Reply(421, "4.7.0", "Too many errors, closing connection")
# A PROXY v2 LOCAL / v1 UNKNOWN session is the load balancer's health check: never a relay.
PROXY_HEALTH_CHECK = Reply(
    550, "5.7.1", "Relaying denied: a load balancer health check (PROXY LOCAL) sends no mail"
)

MESSAGE_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed maximum message size")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Too many recipients")
TRANSACTION_TIMEOUT = Reply(421, "4.4.2", "Transaction took too long, closing connection")
IDLE_TIMEOUT = Reply(421, "4.4.2", "Idle too long, closing connection")
LINE_TOO_LONG = Reply(
    500, "5.5.2", "Line too long (RFC 5321 section 4.5.3.1.6 allows 1000 octets per line)"
)
COMMAND_TOO_LONG = Reply(500, "5.5.2", "Command line too long")
SENDER_OK = Reply(250, "2.1.0", "Sender OK")
RSET_OK = Reply(250, "2.0.0", "OK")
NO_8BITMIME = Reply(
    554, "5.6.3", "Upstream server does not accept 8-bit data (8BITMIME) and ccguard never converts"
)
NEEDS_SMTPUTF8 = Reply(
    553, "5.6.7", "Non-ASCII address requires MAIL FROM with SMTPUTF8 (RFC 6531)"
)

INTERNAL_ERROR = Reply(451, "4.3.0", "Temporary local problem, try again later")
# Milter front: more header fields to remove or change than an MTA takes as edits
# (Postfix's cleanup gives up, and panics, past about 10,000).
TOO_MANY_HEADER_EDITS = Reply(
    554, "5.6.0", "Message has too many header fields to change (forged X-CCGuard-* fields?)"
)
# [limits] max_inflight_bytes is used up by messages in flight: the client's queue retries.
INSUFFICIENT_STORAGE = Reply(452, "4.3.1", "Insufficient system storage, try again later")
STORE_FAILED = Reply(451, "4.3.0", "Quarantine store unavailable, try again later")
SPLIT_BUSY = Reply(451, "4.3.0", "Another delivery of this message is under way, try again later")
UPSTREAM_UNAVAILABLE = Reply(451, "4.4.1", "Upstream server unavailable, try again later")
UPSTREAM_TIMEOUT = Reply(451, "4.4.2", "Upstream server timed out, try again later")
UPSTREAM_TEMPFAIL = Reply(451, "4.4.0", "Upstream server deferred the message, try again later")
# Wrong [upstream] credentials are ccguard's own misconfiguration: defer, never bounce.
UPSTREAM_AUTH_FAILED = Reply(
    451, "4.7.0", "Upstream authentication failed (relay misconfigured), try again later"
)

# Actions (relay/actions): texts are templates filled with str.format.
REJECT_EXPOSURE = Reply(
    550, "5.7.1",
    "Message would show {external} in To/Cc; put recipients in Bcc or use mail merge",
)  # fmt: skip
REJECT_UNCHECKABLE = Reply(
    550, "5.7.1",
    "Message header block is too large to check its recipients; "
    "put recipients in Bcc or use mail merge",
)  # fmt: skip
HELD_FOR_REVIEW = Reply(250, "2.0.0", "held for review as {id}")
SPLIT_DELIVERED = Reply(250, "2.0.0", "OK: delivered as {copies} separate copies")
