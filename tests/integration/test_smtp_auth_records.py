"""The SMTP AUTH user in policy, quarantine, review and logs; AUTH in clear; a broken
users file.  Real swaks against a real ccguard, as in test_smtp_tls_auth.py."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from relay.credentials import UserDB
from tests.helpers.admin import basic
from tests.helpers.relay import LogCapture, running_relay, settings_for
from tests.helpers.smtp_auth import (
    APP2_PASSWORD,
    OUTSIDE,
    PASSWORD,
    auth_attempts,
    make_users_file,
    tls_smtp,
    transactions,
)  # fmt: skip
from tests.helpers.smtp_clients import swaks
from tests.helpers.tls import Pki, make_pki
from tests.helpers.upstream import RecordingUpstream


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return make_users_file(tmp_path / "smtp-users.json")


@pytest.fixture
async def log() -> LogCapture:
    return LogCapture()


# -- the AUTH user in policy, quarantine and review --------------------------------

HOLD_APPS = {
    "name": "hold-app-bulk", "action": "quarantine", "auth_users": ["app1"],
    "min_visible_external": 2,
}  # fmt: skip


async def test_auth_user_is_stored_with_a_held_message_and_shown_to_the_reviewer(
    upstream: RecordingUpstream, pki: Pki, users_file: Path
) -> None:
    settings = settings_for(
        upstream.port,
        smtp=tls_smtp(pki, users_file, allowed_networks=OUTSIDE),
        policy={"rules": [HOLD_APPS]},
    )
    UserDB(settings.admin.users_file).set_password("alice", "reviewer-Pa55word")
    to = ("--header", "To: p1@example.com, p2@example.net, p3@example.com")
    async with running_relay(settings) as relay:
        held = await swaks(relay.smtp_port, "--tls", "--auth", "PLAIN", "--auth-user", "app1",
                           "--auth-password", PASSWORD, *to)  # fmt: skip
        assert any(r.startswith("250 2.0.0 held for review as") for r in held.replies())
        # The same message from app2 is not in the rule's auth_users: it passes.
        passed = await swaks(relay.smtp_port, "--tls", "--auth", "PLAIN", "--auth-user", "app2",
                             "--auth-password", APP2_PASSWORD, *to)  # fmt: skip
        assert passed.returncode == 0 and len(upstream.messages) == 1
        (item,) = (await relay.store.list()).items
        assert (item.auth_user, item.rule) == ("app1", "hold-app-bulk")
        url = f"http://127.0.0.1:{relay.http_port('admin')}"
        async with httpx.AsyncClient(base_url=url) as http:
            api = await http.get(
                f"/api/quarantine/{item.id}", headers=basic("alice", "reviewer-Pa55word")
            )
            assert api.status_code == 200 and api.json()["auth_user"] == "app1"
            page = await http.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token is not None
            form = {"username": "alice", "password": "reviewer-Pa55word",
                    "csrf_token": token.group(1)}  # fmt: skip
            assert (await http.post("/login", data=form)).status_code == 303
            detail = await http.get(f"/quarantine/{item.id}")
            assert "<dt>Logged in as</dt><dd><code>app1</code> (SMTP AUTH)" in detail.text


async def test_allow_plaintext_offers_auth_in_clear_and_warns_at_start(
    upstream: RecordingUpstream, users_file: Path, log: LogCapture
) -> None:
    smtp = {"allowed_networks": OUTSIDE,
            "auth": {"users_file": str(users_file), "allow_plaintext": True}}  # fmt: skip
    async with running_relay(settings_for(upstream.port, smtp=smtp), log) as relay:
        (warning,) = [e for e in log.events() if e["event"] == "smtp auth allowed in plaintext"]
        assert warning["level"] == "warning" and "loopback tests only" in warning["detail"]
        run = await swaks(relay.smtp_port, "--auth", "PLAIN", "--auth-user", "app1",
                          "--auth-password", PASSWORD)  # fmt: skip
        assert run.returncode == 0, run.stdout
    (message,) = upstream.messages
    assert b"with ESMTPA id" in message.data  # authenticated, not encrypted


async def test_a_user_name_that_is_an_address_is_hashed_in_logs(
    upstream: RecordingUpstream, pki: Pki, users_file: Path, log: LogCapture
) -> None:
    UserDB(users_file).set_password("mailer@example.org", "mailer-Pa55word")
    smtp = tls_smtp(pki, users_file, allowed_networks=OUTSIDE)
    async with running_relay(settings_for(upstream.port, smtp=smtp), log) as relay:
        run = await swaks(relay.smtp_port, "--tls", "--auth", "LOGIN", "--auth-user",
                          "mailer@example.org", "--auth-password", "mailer-Pa55word")  # fmt: skip
        assert run.returncode == 0, run.stdout
    (line,) = transactions(log)
    assert line["auth_user"] == relay.redactor.address("mailer@example.org")
    assert "mailer@example.org" not in log.text  # (the suite-wide scan checks this too)


async def test_empty_users_file_warns_and_a_broken_one_defers_auth(
    upstream: RecordingUpstream, pki: Pki, tmp_path: Path, log: LogCapture
) -> None:
    users = tmp_path / "not-yet.json"
    smtp = tls_smtp(pki, users, allowed_networks=OUTSIDE)
    async with running_relay(settings_for(upstream.port, smtp=smtp), log) as relay:
        assert any(e["event"] == "no_smtp_users" for e in log.events())
        users.write_text("{not json")
        run = await swaks(relay.smtp_port, "--tls", "--auth", "PLAIN", "--auth-user", "app1",
                          "--auth-password", PASSWORD)  # fmt: skip
        assert "454 4.7.0 Temporary authentication failure, try again later" in run.replies()
        (error,) = [e for e in log.events() if e["event"] == "smtp users file unreadable"]
        assert "not valid JSON" in error["error"]
        assert auth_attempts(relay, "PLAIN", "error") == 1
