"""Front-door metric families: SMTP sessions and replies, refusals, PROXY, TLS, AUTH, in-flight.

:class:`FrontDoorMetrics` is a mixin of :class:`~relay.observability.metrics.Metrics`;
it creates its families in the registry ``Metrics`` owns and offers the helper
methods the SMTP front calls.  Label values come from the tuples below only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge

from relay.observability.children import Children

__all__ = [
    "AUTH_MECHANISMS",
    "AUTH_RESULTS",
    "CODE_CLASSES",
    "DISCONNECT_REASONS",
    "HANGUP_STAGES",
    "INFLIGHT_STAGES",
    "LOG_SUPPRESSED_EVENTS",
    "PROXY_FAILURES",
    "REFUSAL_REASONS",
    "SMTP_STAGES",
    "TLS_FAILURES",
    "TLS_KINDS",
    "TLS_VERSIONS",
    "FrontDoorMetrics",
    "code_class",
]

SMTP_STAGES = ("connect", "helo", "mail", "rcpt", "data", "other")
#: Where a client that hung up without QUIT was: ``none`` = between transactions.
HANGUP_STAGES = ("none", "mail", "rcpt", "data")
CODE_CLASSES = ("2xx", "4xx", "5xx")
#: Where a transaction can be refused for want of in-flight budget.
INFLIGHT_STAGES = ("mail", "data")
#: Why a connection was refused (or closed unanswered) before its greeting.
REFUSAL_REASONS = (
    "network",
    "max_connections",
    "max_connections_per_ip",
    "early_talker",
    "proxy",
)
#: Why ccguard closed a session after its greeting, for what the client did.
DISCONNECT_REASONS = ("too_many_errors",)
#: Why a PROXY protocol header was not accepted.
PROXY_FAILURES = ("untrusted_peer", "invalid", "timeout", "no_address")
#: The door's log lines ``[logging] door_log_burst`` may drop (relay.smtp.door_log).
LOG_SUPPRESSED_EVENTS = (
    "client_refused",
    "tls_handshake_failed",
    "proxy_header_refused",
    "smtp_auth_failed",
)
#: SMTP AUTH: mechanisms offered and how an attempt ended (never a user name).
AUTH_MECHANISMS = ("PLAIN", "LOGIN")
AUTH_RESULTS = ("success", "failure", "throttled", "busy", "error")
#: Most (stage, reply code) pairs :meth:`FrontDoorMetrics.observe_reply` remembers; both
#: come from bounded sets (aiosmtpd's commands, ccguard's replies), this keeps it so.
_REPLY_KEYS_MAX = 1024
#: TLS protocol versions the listener accepts (1.2 minimum); anything else is "other".
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
#: Why a client's TLS handshake failed: a TLS alert or bad record, the client left, it
#: took longer than ``[smtp] tls_handshake_timeout``, other.
TLS_FAILURES = ("protocol", "closed", "timeout", "other")
#: Which handshake failed: STARTTLS on ``[smtp] listen``, or one on ``[smtp] tls_listen``.
TLS_KINDS = ("starttls", "implicit")


def code_class(code: int) -> str:
    """``"2xx"`` … ``"5xx"`` for an SMTP reply code, ``"other"`` for anything else."""
    return f"{code // 100}xx" if 200 <= code < 600 else "other"


class FrontDoorMetrics:
    """The SMTP front's metric families, created in ``self.registry``."""

    registry: CollectorRegistry

    def _smtp_sessions(self) -> None:
        reg = self.registry
        self.smtp_replies = Counter(
            "ccguard_smtp_replies",
            "SMTP replies sent to clients by stage and code class.",
            ["stage", "code_class"],
            registry=reg,
        )
        self._replies = Children(self.smtp_replies)
        self._reply_children: dict[tuple[str, int], Counter] = {}
        for stage in SMTP_STAGES:
            for cls in CODE_CLASSES:
                self._replies(stage, cls)
        self.sessions_active = Gauge(
            "ccguard_smtp_sessions_active", "SMTP client sessions open now.", registry=reg
        )
        self.client_hangups = Counter(
            "ccguard_smtp_client_hangups",
            "Clients that hung up without QUIT (reset or close), by where their "
            'transaction was (stage="none": between transactions).',
            ["stage"],
            registry=reg,
        )
        for stage in HANGUP_STAGES:
            self.client_hangups.labels(stage=stage)

    def _front_door(self) -> None:
        reg = self.registry
        self.connections_refused = Counter(
            "ccguard_smtp_connections_refused",
            "SMTP connections refused before the greeting, by reason.",
            ["reason"],
            registry=reg,
        )
        for reason in REFUSAL_REASONS:
            self.connections_refused.labels(reason=reason)
        self.clients_disconnected = Counter(
            "ccguard_smtp_clients_disconnected",
            "SMTP sessions ccguard closed after the greeting for what the client did, "
            "by reason (too_many_errors: [limits] hard_error_limit).",
            ["reason"],
            registry=reg,
        )
        for reason in DISCONNECT_REASONS:
            self.clients_disconnected.labels(reason=reason)
        self.rate_limited_messages = Counter(
            "ccguard_smtp_rate_limited_messages",
            "MAIL FROM commands refused by [limits] messages_per_minute.",
            registry=reg,
        )
        self.proxy_header_failures = Counter(
            "ccguard_smtp_proxy_header_failures",
            "Connections closed because their PROXY protocol header was missing, "
            "invalid or from an untrusted peer.",
            ["reason"],
            registry=reg,
        )
        for reason in PROXY_FAILURES:
            self.proxy_header_failures.labels(reason=reason)
        self.log_lines_suppressed = Counter(
            "ccguard_log_lines_suppressed",
            "Log lines of connections turned away at the door left out by [logging] "
            "door_log_burst (each window's count is logged once), by event.",
            ["event"],
            registry=reg,
        )
        for event in LOG_SUPPRESSED_EVENTS:
            self.log_lines_suppressed.labels(event=event)
        self.accepts_overdue = Counter(
            "ccguard_worker_accepts_overdue",
            "New SMTP connections a worker took only after waiting the full bound "
            "for a worker with fewer sessions, which did not take them (busy, hung "
            "or gone; [smtp] workers > 1).",
            registry=reg,
        )

    def _tls_auth(self) -> None:
        reg = self.registry
        self.smtp_tls_sessions = Counter(
            "ccguard_smtp_tls_sessions",
            "SMTP client sessions that completed a TLS handshake (STARTTLS or implicit TLS), "
            "by protocol version.",
            ["version"],
            registry=reg,
        )
        for version in TLS_VERSIONS:
            self.smtp_tls_sessions.labels(version=version)
        self.smtp_tls_failures = Counter(
            "ccguard_smtp_tls_handshake_failures",
            "SMTP client TLS handshakes that failed, by kind (starttls, implicit: on "
            "[smtp] tls_listen) and reason (protocol, closed, other).",
            ["kind", "reason"],
            registry=reg,
        )
        for kind in TLS_KINDS:
            for reason in TLS_FAILURES:
                self.smtp_tls_failures.labels(kind=kind, reason=reason)
        self.smtp_auth_attempts = Counter(
            "ccguard_smtp_auth_attempts",
            "SMTP AUTH attempts by mechanism and result "
            "(success, failure, throttled, busy, error).",
            ["mechanism", "result"],
            registry=reg,
        )
        for mechanism in AUTH_MECHANISMS:
            for result in AUTH_RESULTS:
                self.smtp_auth_attempts.labels(mechanism=mechanism, result=result)

    def _inflight(self) -> None:
        reg = self.registry
        self.inflight_bytes = Gauge(
            "ccguard_inflight_bytes",
            "Message bytes being received or processed now ([limits] max_inflight_bytes).",
            registry=reg,
        )
        self.inflight_limit = Gauge(
            "ccguard_inflight_limit_bytes",
            "The configured [limits] max_inflight_bytes.",
            registry=reg,
        )
        self.inflight_refusals = Counter(
            "ccguard_inflight_refusals",
            "Transactions refused with 452 4.3.1 because max_inflight_bytes was used up, "
            "by stage (mail: SIZE= announced, data: while receiving).",
            ["stage"],
            registry=reg,
        )
        for stage in INFLIGHT_STAGES:
            self.inflight_refusals.labels(stage=stage)

    # -- helpers the SMTP front calls ----------------------------------------------

    def observe_reply(self, stage: str, code: int) -> None:
        """Count one SMTP reply; unknown stages count as ``other``."""
        child = self._reply_children.get((stage, code))
        if child is None:
            child = self._replies(stage if stage in SMTP_STAGES else "other", code_class(code))
            if len(self._reply_children) < _REPLY_KEYS_MAX:
                self._reply_children[(stage, code)] = child
        child.inc()

    def session_opened(self) -> None:
        """One more SMTP session is open."""
        self.sessions_active.inc()

    def session_closed(self) -> None:
        """One SMTP session ended."""
        self.sessions_active.dec()

    def accept_overdue(self) -> None:
        """Count one connection taken after the wait for a less busy worker ran out."""
        self.accepts_overdue.inc()

    def client_hung_up(self, stage: str) -> None:
        """Count one client that hung up without QUIT; unknown stages count as ``none``."""
        self.client_hangups.labels(stage=stage if stage in HANGUP_STAGES else "none").inc()

    @contextmanager
    def session(self) -> Iterator[None]:
        """Count a session as open while the block runs."""
        self.session_opened()
        try:
            yield
        finally:
            self.session_closed()

    def connection_refused(self, reason: str) -> None:
        """Count one connection refused at the door (see :data:`REFUSAL_REASONS`)."""
        self.connections_refused.labels(reason=reason).inc()

    def client_disconnected(self, reason: str) -> None:
        """Count one session closed for the client's behaviour (see :data:`DISCONNECT_REASONS`;
        any other ``reason`` is a programming error: ValueError)."""
        if reason not in DISCONNECT_REASONS:
            raise ValueError(f"unknown disconnect reason {reason!r}")
        self.clients_disconnected.labels(reason=reason).inc()

    def rate_limited(self) -> None:
        """Count one MAIL FROM refused by the message rate limit."""
        self.rate_limited_messages.inc()

    def proxy_header_failure(self, reason: str) -> None:
        """Count one PROXY header not accepted (see :data:`PROXY_FAILURES`)."""
        self.proxy_header_failures.labels(reason=reason).inc()

    def log_line_suppressed(self, event: str) -> None:
        """Count one door log line left out (see :data:`LOG_SUPPRESSED_EVENTS`)."""
        event = event if event in LOG_SUPPRESSED_EVENTS else "other"
        self.log_lines_suppressed.labels(event=event).inc()

    def smtp_tls_failed(self, reason: str, kind: str = "starttls") -> None:
        """Count one failed client TLS handshake of ``kind`` (see :data:`TLS_KINDS`);
        unknown reasons count as ``other``."""
        kind = kind if kind in TLS_KINDS else "starttls"
        reason = reason if reason in TLS_FAILURES else "other"
        self.smtp_tls_failures.labels(kind=kind, reason=reason).inc()

    def smtp_tls_session(self, version: str) -> None:
        """Count one client session encrypted with ``version`` (e.g. ``TLSv1.3``)."""
        self.smtp_tls_sessions.labels(version=version if version in TLS_VERSIONS else "other").inc()

    def smtp_auth_attempt(self, mechanism: str, result: str) -> None:
        """Count one SMTP AUTH attempt; unknown mechanisms and results are kept out of labels."""
        mechanism = mechanism if mechanism in AUTH_MECHANISMS else "other"
        result = result if result in AUTH_RESULTS else "failure"
        self.smtp_auth_attempts.labels(mechanism=mechanism, result=result).inc()

    def set_inflight_bytes(self, value: int) -> None:
        """The bytes reserved by transactions in flight now."""
        self.inflight_bytes.set(value)

    def inflight_refused(self, stage: str) -> None:
        """Count one transaction refused for want of in-flight budget at ``stage``."""
        self.inflight_refusals.labels(stage=stage if stage in INFLIGHT_STAGES else "data").inc()
