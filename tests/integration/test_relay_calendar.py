"""Calendar invitations through a real relay on loopback and through ``ccguard check``."""

from __future__ import annotations

import asyncio
import json
import smtplib
import sqlite3
import urllib.request
from pathlib import Path
from typing import Any

from tests.helpers.calendar import attendee_lines, ics, invitation, multipart, part
from tests.helpers.observability import parse_metrics
from tests.helpers.process import run_ccguard
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream

HIDE = {"rules": [{"name": "hide-external", "min_visible_external": 3, "action": "rewrite"}]}
GUESTS = [f"guest{i:03d}@example.com" for i in range(20)]


def outlook_invitation(attendees: int = 20, subject: str = "Induction") -> bytes:
    """multipart/mixed > multipart/alternative > text/plain + base64 text/calendar,
    addressed To one person, as Outlook sends it."""
    alternative = multipart(
        "alternative",
        "alt-boundary",
        [
            part("You are invited to the induction.", "text/plain; charset=UTF-8"),
            part(ics(attendee_lines(attendees)), encoding="base64"),
        ],
    )
    mixed = multipart("mixed", "mixed-boundary", [alternative])
    return invitation(mixed, to="Guest 000 <guest000@example.com>", subject=subject)


def send(port: int, data: bytes, rcpts: list[str]) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        for rcpt in rcpts:
            client.rcpt(rcpt)
        return client.data(data)


def scrape(port: int) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return parse_metrics(resp.read())


async def test_invitation_to_20_externals_is_quarantined_not_rewritten(
    upstream: RecordingUpstream,
) -> None:
    settings = settings_for(upstream.port, policy=HIDE)
    log = LogCapture()
    data = outlook_invitation()
    plain = (
        b"From: Alice <alice@example.org>\r\nTo: " + ", ".join(GUESTS).encode() + b"\r\n"
        b"Subject: plain\r\nMessage-ID: <plain@example.org>\r\n\r\nNo invitation.\r\n"
    )
    async with running_relay(settings, log) as relay:
        port = relay.smtp_port
        code, text = await asyncio.to_thread(send, port, data, GUESTS)
        plain_code, _ = await asyncio.to_thread(send, port, plain, GUESTS)
        metrics = await asyncio.to_thread(scrape, relay.http_port("admin"))
    # The invitation: held, nothing delivered, not rewritten.
    assert code == 250 and text.startswith(b"2.0.0 held for review as "), text
    held_id = text.decode().rsplit(" ", 1)[1]
    row = (
        sqlite3.connect(settings.quarantine.database)
        .execute("SELECT status, message, reason FROM messages WHERE id = ?", (held_id,))
        .fetchone()
    )
    assert row[0] == "held"
    assert bytes(row[1]).endswith(data)
    assert "rewrite cannot hide calendar attendees, quarantine instead" in row[2]
    # The same rule still rewrites ordinary mail: only that message reached the upstream.
    assert plain_code == 250
    assert len(upstream.messages) == 1
    delivered = upstream.messages[0].data
    assert b"Subject: plain" in delivered and b"guest005@example.com" not in delivered
    # The transaction log and the metrics show the fallback.
    first = next(e for e in log.events() if e.get("event") == "transaction")
    assert first["action"] == "quarantine" and first["rule"] == "hide-external"
    assert first["calendar_fallback"] == "rewrite"
    assert first["exposure"]["visible_external"] == 20
    assert first["exposure"]["calendar"]["attendees_external"] == 20
    assert first["exposure"]["calendar"]["methods"] == ["REQUEST"]
    fallbacks = "ccguard_calendar_fallbacks_total"
    assert metrics.value(fallbacks, replaced="rewrite", action="quarantine") == 1
    assert metrics.value(fallbacks, replaced="split", action="quarantine") == 0
    assert metrics.value("ccguard_calendar_messages_total", truncated="false") == 1
    assert (
        metrics.value(
            "ccguard_messages_total", action="quarantine", rule="hide-external", front="smtp"
        )
        == 1
    )
    assert (
        metrics.value(
            "ccguard_messages_total", action="rewrite", rule="hide-external", front="smtp"
        )
        == 1
    )


CHECK_CONFIG = """
[organisation]
internal_domains = ["example.org"]

[[policy.rules]]
name = "hide-external"
action = "rewrite"
min_visible_external = 3
"""


def test_check_json_and_text_report_calendar_counts(tmp_path: Path) -> None:
    config = tmp_path / "ccguard.toml"
    config.write_text(CHECK_CONFIG)
    eml = tmp_path / "invite.eml"
    eml.write_bytes(outlook_invitation())
    result = run_ccguard("check", "--json", "--config", str(config), str(eml))
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["action"] == "quarantine"
    assert record["matched_action"] == "quarantine"
    assert record["calendar_fallback"] == "rewrite"
    assert record["exposure"]["visible_external"] == 20
    assert record["exposure"]["visible_internal"] == 1  # the organiser
    assert record["exposure"]["per_header"]["to"] == 1
    assert record["exposure"]["calendar"] == {
        "invitation": True,
        "attendees_internal": 1,
        "attendees_external": 20,
        "truncated": False,
        "methods": ["REQUEST"],
    }
    assert "@" not in result.stdout
    text = run_ccguard("check", "--config", str(config), str(eml))
    assert text.returncode == 0, text.stderr
    assert "quarantine" in text.stdout
    assert "rewrite cannot hide calendar attendees" in text.stdout
    assert "[calendar invitation: 20 external, 1 internal attendees]" in text.stdout


def test_check_reports_a_calendar_over_the_cap_as_not_fully_read(tmp_path: Path) -> None:
    config = tmp_path / "ccguard.toml"
    config.write_text(CHECK_CONFIG + "\n[inspect]\nmax_calendar_bytes = 512\n")
    eml = tmp_path / "invite.eml"
    eml.write_bytes(outlook_invitation())
    record = json.loads(run_ccguard("check", "--json", "--config", str(config), str(eml)).stdout)
    assert record["exposure"]["calendar"]["truncated"] is True
    assert record["exposure"]["calendar"]["attendees_external"] == 0
    assert record["rule"] is None  # one visible address: no rule; the flag is for the policy
