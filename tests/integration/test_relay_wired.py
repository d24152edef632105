"""The whole relay wired together: policy verdicts on the SMTP path, metrics, readiness."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import signal
import smtplib
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from relay.credentials.users import UserDB
from tests.helpers.process import free_port, run_ccguard, start_ccguard, wait_for_port
from tests.helpers.relay import running_relay, settings_for
from tests.helpers.upstream import RecordingUpstream

ADMIN_PASSWORD = "correct horse battery staple"
RULES = {
    "rules": [
        {"name": "hold-mass", "min_visible_external": 8, "action": "quarantine"},
        {"name": "refuse-many", "min_visible_external": 6, "action": "reject"},
        {"name": "hide-external", "min_visible_external": 3, "action": "rewrite"},
    ]
}


def message(externals: int, subject: str = "hello") -> bytes:
    to = ", ".join(f"Person {i} <p{i}@example.com>" for i in range(externals))
    return (
        f"From: Alice <alice@example.org>\r\nTo: {to or 'colleague@example.org'}\r\n"
        f"Cc: Boss <boss@example.org>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject}@example.org>\r\n\r\nBody of {subject}\r\n"
    ).encode()


def send(port: int, data: bytes, rcpts: list[str] | None = None) -> tuple[int, bytes]:
    """Send ``data``; return the reply to end of DATA (code, text)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        for rcpt in rcpts or ["p0@example.com"]:
            client.rcpt(rcpt)
        return client.data(data)


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_known_mix_shows_exact_counts_on_metrics(upstream: RecordingUpstream) -> None:
    settings = settings_for(upstream.port, policy=RULES)
    async with running_relay(settings) as relay:
        port = relay.smtp_port
        replies = [
            await asyncio.to_thread(send, port, message(n, f"m{n}")) for n in (0, 1, 4, 7, 9)
        ]
        status, body = await asyncio.to_thread(http_get, relay.http_port("admin"), "/metrics")
    assert [code for code, _ in replies] == [250, 250, 250, 550, 250]
    assert replies[4][1].startswith(b"2.0.0 held for review as ")
    assert status == 200
    got = samples(body.decode())

    def messages(action: str, rule: str) -> float:
        return got[
            ("ccguard_messages_total", (("action", action), ("front", "smtp"), ("rule", rule)))
        ]

    assert messages("pass", "none") == 2
    assert messages("rewrite", "hide-external") == 1
    assert messages("reject", "refuse-many") == 1
    assert messages("quarantine", "hold-mass") == 1
    bucket = "ccguard_visible_external_recipients_bucket"
    assert got[(bucket, (("le", "0.0"),))] == 1
    assert got[(bucket, (("le", "1.0"),))] == 2
    assert got[(bucket, (("le", "5.0"),))] == 3
    assert got[(bucket, (("le", "10.0"),))] == 5
    assert got[("ccguard_visible_external_recipients_count", ())] == 5
    assert got[("ccguard_visible_external_recipients_sum", ())] == 0 + 1 + 4 + 7 + 9
    data = "ccguard_smtp_replies_total"
    assert got[(data, (("code_class", "2xx"), ("stage", "data")))] == 4
    assert got[(data, (("code_class", "5xx"), ("stage", "data")))] == 1
    assert got[(data, (("code_class", "2xx"), ("stage", "helo")))] == 5  # one EHLO per message
    assert got[("ccguard_quarantine_messages", (("status", "held"),))] == 1
    # Only the passed and rewritten messages reached the upstream; the rewrite hid them.
    assert len(upstream.messages) == 3
    rewritten = upstream.messages[2].data
    assert b"p3@example.com" not in rewritten.split(b"\r\n\r\n")[0]
    assert b"X-CCGuard-Action: rewrite" in rewritten


async def test_readyz_follows_the_upstream(upstream: RecordingUpstream) -> None:
    async with running_relay(settings_for(upstream.port)) as relay:
        port = relay.http_port("admin")
        ok_status, ok_body = await asyncio.to_thread(http_get, port, "/readyz")
        await upstream.stop()
        down_status, down_body = await asyncio.to_thread(http_get, port, "/readyz")
        back = await RecordingUpstream().start(port=upstream.port)
        try:
            back_status, _ = await asyncio.to_thread(http_get, port, "/readyz")
        finally:
            await back.stop()
        health, _ = await asyncio.to_thread(http_get, port, "/healthz")
    assert ok_status == 200 and json.loads(ok_body)["status"] == "ok"
    assert down_status == 503
    down = json.loads(down_body)
    assert down["status"] == "unavailable"
    assert down["checks"]["upstream"]["ok"] is False
    assert down["checks"]["store"]["ok"] is True and down["checks"]["smtp"]["ok"] is True
    assert back_status == 200 and health == 200


CONTROLS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]


async def test_notice_subject_carries_no_control_characters(upstream: RecordingUpstream) -> None:
    hostile = "Pay\x00roll\x1b[31m\x7f\x85 week\r\nBcc: p9@example.com\x07"
    encoded = base64.b64encode(hostile.encode()).decode()
    raw = message(8).replace(b"Subject: hello", f"Subject: =?utf-8?b?{encoded}?=".encode())
    notices = {"enabled": True, "from": "postmaster@example.org"}
    settings = settings_for(upstream.port, policy=RULES, notifications=notices)
    async with running_relay(settings) as relay:
        code, text = await asyncio.to_thread(send, relay.smtp_port, raw)
        assert code == 250 and b"held" in text.lower(), text
        [notice] = await upstream.wait_for(1, timeout=30)
    assert notice.rcpt_tos == ["alice@example.org"] and notice.mail_from == "<>"
    parsed = email.message_from_bytes(notice.data, policy=email.policy.default)
    subject = str(parsed["Subject"]).strip()  # the stdlib may fold right after "Subject:"
    assert subject == "Your message is held for review: Pay roll [31m week Bcc: p9@example.com"
    assert not any(c in subject for c in CONTROLS)
    head = notice.data.split(b"\r\n\r\n", 1)[0]
    assert b"\x00" not in head and b"\nBcc:" not in head
    body = parsed.get_body(preferencelist=("plain",))
    assert body is not None
    [line] = [x for x in body.get_content().splitlines() if x.startswith("Subject:")]
    assert line == "Subject:       Pay roll [31m week Bcc: p9@example.com"


FORGED = (
    b"X-CCGuard-Action: pass; rule=approved-by-admin\r\n"
    b"x-ccguard-rule: approved\r\n"
    b"X-CCGuard-Exposure: visible_external=0;\r\n\tvisible_total=1\r\n"
)


def _release_as_is(admin_port: int, held_id: str) -> tuple[int, dict[str, Any]]:
    token = base64.b64encode(f"alice:{ADMIN_PASSWORD}".encode()).decode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{admin_port}/api/quarantine/{held_id}/release",
        data=b'{"mode": "as-is"}',
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


async def test_as_is_release_strips_forged_ccguard_headers(upstream: RecordingUpstream) -> None:
    clean = message(8, "forged")
    head, body = clean.split(b"\r\n\r\n", 1)
    forged = head.replace(b"\r\nSubject:", b"\r\n" + FORGED.rstrip(b"\r\n") + b"\r\nSubject:")
    settings = settings_for(upstream.port, policy=RULES)
    UserDB(settings.admin.users_file).set_password("alice", ADMIN_PASSWORD)
    async with running_relay(settings) as relay:
        code, text = await asyncio.to_thread(send, relay.smtp_port, forged + b"\r\n\r\n" + body)
        assert code == 250, text
        held_id = text.decode().rsplit(" ", 1)[1]
        held = await relay.store.get(held_id)
        assert held is not None and FORGED in held.message  # held exactly as received
        status, answer = await asyncio.to_thread(_release_as_is, relay.http_port("admin"), held_id)
        assert status == 200 and answer["status"] == "released", answer
        [delivered] = await upstream.wait_for(1, timeout=30)
    trace = held.message[: held.message.index(b"From: ")]
    assert trace.startswith(b"Received: from ")
    assert delivered.data == trace + clean  # the held bytes, minus the forged fields only
    assert b"x-ccguard" not in delivered.data.lower()


def write_config(tmp_path: Path, smtp_port: int, upstream_port: int) -> Path:
    rules = "".join(
        f'[[policy.rules]]\nname = "{r["name"]}"\nmin_visible_external = '
        f'{r["min_visible_external"]}\naction = "{r["action"]}"\n'
        for r in RULES["rules"]
    )
    config = tmp_path / "ccguard.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\nhostname = "ccguard.test"\n'
        f'[upstream]\nhost = "127.0.0.1"\nport = {upstream_port}\nstarttls = "off"\n'
        f'[organisation]\ninternal_domains = ["example.org"]\n'
        f'[quarantine]\ndatabase = "{tmp_path}/ccguard.db"\n'
        f'[admin]\nenabled = false\n[logging]\nhash_key = "test-key"\n' + rules
    )
    return config


async def test_quarantined_message_survives_sigkill_right_after_250(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    port = free_port()
    config = write_config(tmp_path, port, upstream.port)
    proc = start_ccguard("serve", "--config", str(config))
    data = message(12, "payroll")
    try:
        await asyncio.to_thread(wait_for_port, port, proc)
        code, text = await asyncio.to_thread(send, port, data, ["p0@example.com", "p1@example.com"])
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert code == 250 and text.startswith(b"2.0.0 held for review as ")
    held_id = text.decode().rsplit(" ", 1)[1]
    row: Any = (
        sqlite3.connect(tmp_path / "ccguard.db")
        .execute("SELECT status, message, rcpt_tos FROM messages WHERE id = ?", (held_id,))
        .fetchone()
    )
    assert row is not None
    assert row[0] == "held"
    assert bytes(row[1]).endswith(data)  # ccguard's Received header, then the client's bytes
    listed = run_ccguard("quarantine", "list", "--json", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    assert held_id in listed.stdout
    assert upstream.messages == []
