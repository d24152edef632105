"""Every place at the door that turns a client away writes through the same limit: per
reason, a burst of one line, the rest counted and summed up at shutdown with the
line's ``reason``, ``kind`` and ``stage``.  Real relays on loopback, real clients (raw
sockets); a held session or a silent handshake fills the limits."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from relay.app import Relay
from tests.helpers.hangup import read_reply
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.smtp_auth import tls_smtp
from tests.helpers.sockets import closed_unanswered, silent_clients
from tests.helpers.tls import Pki
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import wait_until

SUPPRESSED = "door log lines suppressed"
TOO_MANY = b"421 4.7.0 Too many connections, try again later\r\n"
TURNED_AWAY = 3  # one line written, two left out


def tls_port(relay: Relay) -> int:
    assert relay.tls_listen is not None
    return int(relay.tls_listen.rpartition(":")[2])


def over_a_held_session(relay: Relay) -> list[bytes]:
    """One greeted session holds the only slot; what the next clients are told."""
    port = relay.smtp_port
    with socket.create_connection(("127.0.0.1", port), timeout=30) as held:
        assert read_reply(held).startswith(b"220 ")
        return [closed_unanswered(port, b"") for _ in range(TURNED_AWAY)]


def early_talkers(relay: Relay) -> list[bytes]:
    return [
        closed_unanswered(relay.smtp_port, b"EHLO x.example.net\r\n") for _ in range(TURNED_AWAY)
    ]


def over_a_held_handshake(relay: Relay) -> list[bytes]:
    """One silent client holds the only TLS handshake slot; the next ones are closed."""
    port = tls_port(relay)
    with silent_clients(port, 1):
        deadline = time.monotonic() + 30
        while relay.front.handshakes.open < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # until ccguard has taken it (bounded)
        return [closed_unanswered(port, b"") for _ in range(TURNED_AWAY)]


def starttls_then_leave(relay: Relay) -> list[bytes]:
    """Clients in a transaction that ask for STARTTLS and leave before their ClientHello."""
    replies = []
    for _ in range(TURNED_AWAY):
        with socket.create_connection(("127.0.0.1", relay.smtp_port), timeout=30) as sock:
            read_reply(sock)
            for line in (b"EHLO client.example.org", b"MAIL FROM:<alice@example.org>"):
                sock.sendall(line + b"\r\n")
                read_reply(sock)
            sock.sendall(b"STARTTLS\r\n")
            replies.append(read_reply(sock))
    return replies


@dataclass(frozen=True)
class Site:
    """A call site: its settings, clients it turns away, the line it writes."""

    sections: dict[str, Any]
    clients: Callable[[Relay], list[bytes]]
    replies: set[bytes] | None  # what each client is told (None: not the point here)
    event: str
    level: str
    #: ``reason`` and, where the line has them, ``kind``, ``stage``.
    key: dict[str, str]
    metric: str = "client_refused"
    #: Fields every written line has besides its key (their values vary).
    extra: tuple[str, ...] = field(default=("client_ip",))


def tls_sections(pki: Pki, **sections: Any) -> dict[str, Any]:
    return {"smtp": tls_smtp(pki, None, tls_listen="127.0.0.1:0"), **sections}


SITES = {
    "max_connections": lambda pki: Site(
        {"limits": {"max_connections": 1}}, over_a_held_session, {TOO_MANY},
        "client refused", "warning", {"reason": "max_connections"},
    ),
    "max_connections_per_ip": lambda pki: Site(
        {"limits": {"max_connections_per_ip": 1}}, over_a_held_session, {TOO_MANY},
        "client refused", "warning", {"reason": "max_connections_per_ip"},
    ),
    "early_talker": lambda pki: Site(
        {"limits": {"pregreet_wait": 1.0}}, early_talkers, None,
        "client refused", "warning", {"reason": "early_talker"},
    ),
    "tls_handshake_limit": lambda pki: Site(
        tls_sections(pki, limits={"max_connections_per_ip": 1}), over_a_held_handshake, {b""},
        "client refused", "warning", {"reason": "max_connections_per_ip", "stage": "tls"},
    ),
    "starttls_failure": lambda pki: Site(
        {"smtp": tls_smtp(pki, None)}, starttls_then_leave, {b"220 Ready to start TLS\r\n"},
        "tls handshake failed", "warning", {"kind": "starttls", "reason": "closed"},
        metric="tls_handshake_failed", extra=("client_ip", "queue_id", "detail"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SITES))
async def test_each_site_at_the_door_writes_one_line_then_counts_then_sums_up(
    upstream: RecordingUpstream, pki: Pki, name: str
) -> None:
    site = SITES[name](pki)
    log = LogCapture()
    logging = {"door_log_burst": 1, "door_log_interval": 3600}
    settings = settings_for(upstream.port, **site.sections, logging=logging)
    async with running_relay(settings, log) as relay:
        replies = await asyncio.to_thread(site.clients, relay)
        if site.replies is not None:
            assert set(replies) == site.replies
        suppressed = "ccguard_log_lines_suppressed_total"
        registry = relay.metrics.registry

        def counted() -> float:
            return registry.get_sample_value(suppressed, {"event": site.metric}) or 0.0

        await wait_until(lambda: counted() == TURNED_AWAY - 1, "the lines left out counted")
        await wait_until(lambda: len(relay.front.sessions) == 0, "the sessions to end")
    events = log.events()
    [line] = [e for e in events if e["event"] == site.event and e["level"] == site.level]
    assert {k: line.get(k) for k in ("reason", "kind", "stage")} == {
        "reason": None, "kind": None, "stage": None, **site.key,
    }  # fmt: skip
    assert set(line) == {"event", "level", *site.key, *site.extra}
    if "queue_id" in site.extra:  # kept when the failure was inside a transaction
        ended = {e["queue_id"] for e in events if e["event"] == "transaction"}
        assert line["queue_id"] in ended
    [summary] = [e for e in events if e["event"] == SUPPRESSED]
    assert summary.pop("window_seconds") < 60
    assert summary == {
        "event": SUPPRESSED, "level": site.level, "line": site.event, **site.key,
        "suppressed": TURNED_AWAY - 1, "interval_seconds": 3600,
    }  # fmt: skip
