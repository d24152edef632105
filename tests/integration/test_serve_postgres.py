"""A real ``ccguard serve`` on PostgreSQL: quarantine via SMTP, list and release via the
admin API; the database stopped → 451 4.3.0 and /readyz 503; restarted → served again;
a split whose copy was deferred is completed by the client's retry, once per recipient."""

from __future__ import annotations

import asyncio
import smtplib
import subprocess
from collections import Counter
from pathlib import Path

import httpx
import psycopg

from relay.credentials.users import UserDB
from tests.helpers.admin import PASSWORD, basic
from tests.helpers.faulty_upstream import FaultyUpstream, reply
from tests.helpers.postgres import PgCluster
from tests.helpers.process import free_port, start_ccguard, wait_for_port
from tests.helpers.upstream import RecordingUpstream

GUESTS = ("g1@example.com", "g2@example.net", "g3@example.com")
BULK = (
    b"From: alice@example.org\r\nTo: g1@example.com, g2@example.net, g3@example.com\r\n"
    b"Subject: training\r\n\r\nsee you there\r\n"
)
STORE_FAILED = (451, b"4.3.0 Quarantine store unavailable, try again later")


def _config(tmp_path: Path, url: str, smtp: int, http: int, upstream: int) -> Path:
    path = tmp_path / "ccguard.toml"
    path.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{smtp}"\nhostname = "ccguard.test"\n'
        f'[upstream]\nhost = "127.0.0.1"\nport = {upstream}\nstarttls = "off"\n'
        '[organisation]\ninternal_domains = ["example.org"]\n'
        f'[quarantine]\ndatabase = "{url}"\nconnect_timeout = 1.0\nstatement_timeout = 3.0\n'
        f'[admin]\nlisten = "127.0.0.1:{http}"\nusers_file = "{tmp_path}/users.json"\n'
        '[logging]\nhash_key = "test-key"\n[notifications]\nenabled = false\n'
        '[[policy.rules]]\nname = "bulk"\naction = "quarantine"\nmin_visible_external = 2\n'
    )
    return path


def _send(port: int) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("client.example.org")
        client.mail("alice@example.org")
        for rcpt in GUESTS:
            client.rcpt(rcpt)
        return client.data(BULK)


async def _send_until_held(port: int, attempts: int = 10) -> str:
    """A client retrying after each 451 (bounded); returns the held message's id."""
    for _ in range(attempts):
        code, text = await asyncio.to_thread(_send, port)
        if code == 250:
            return text.decode().rsplit(" ", 1)[1]
        assert (code, text) == STORE_FAILED
    raise AssertionError(f"still refused after {attempts} attempts")


def _gauge(metrics: str, name: str) -> float:
    [line] = [line for line in metrics.splitlines() if line.startswith(name + " ")]
    return float(line.rsplit(" ", 1)[1])


def _held_ids(cluster: PgCluster, url: str) -> list[str]:
    with psycopg.connect(url, password=cluster.password) as conn:
        rows = conn.execute("SELECT id FROM messages WHERE status = 'held' ORDER BY id")
        return [r[0] for r in rows.fetchall()]


async def test_serve_on_postgresql_quarantines_releases_and_survives_an_outage(
    pg_outage_cluster: PgCluster, tmp_path: Path, upstream: RecordingUpstream
) -> None:
    cluster = pg_outage_cluster
    url = cluster.url(cluster.create_database())
    UserDB(tmp_path / "users.json").set_password("alice", PASSWORD)
    smtp, http = free_port(), free_port()
    cfg = _config(tmp_path, url, smtp, http, upstream.port)
    proc = start_ccguard("serve", "--config", str(cfg), env={"PGPASSWORD": cluster.password})
    admin = httpx.AsyncClient(base_url=f"http://127.0.0.1:{http}", timeout=30)
    try:
        await asyncio.to_thread(wait_for_port, http, proc)
        await asyncio.to_thread(wait_for_port, smtp, proc)
        first = await _send_until_held(smtp, attempts=1)
        listed = (await admin.get("/api/quarantine", headers=basic())).json()
        assert [m["id"] for m in listed["items"]] == [first]
        resp = await admin.post(
            f"/api/quarantine/{first}/release", json={"mode": "as-is"}, headers=basic()
        )
        assert resp.status_code == 200, resp.text
        await upstream.wait_for(1)
        assert sorted(upstream.messages[0].rcpt_tos) == sorted(GUESTS)
        assert (await admin.get("/readyz")).status_code == 200
        pool = _gauge(
            (await admin.get("/metrics")).text, 'ccguard_store_pool_connections{state="open"}'
        )
        assert pool >= 1

        cluster.stop()
        try:
            assert await asyncio.to_thread(_send, smtp) == STORE_FAILED
            assert (await admin.get("/readyz")).status_code == 503
            metrics = (await admin.get("/metrics")).text
            assert _gauge(metrics, "ccguard_store_errors_total") >= 1
        finally:
            cluster.start()
        second = await _send_until_held(smtp)
        assert (await admin.get("/readyz")).status_code == 200
    finally:
        await admin.aclose()
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"Traceback" not in out + err
    assert cluster.password.encode() not in out + err
    assert _held_ids(cluster, url) == [second]  # the refused attempt left nothing behind
    assert len(upstream.messages) == 1


def test_serve_refuses_to_start_when_the_database_is_unreachable(tmp_path: Path) -> None:
    url = f"postgresql://ccguard@127.0.0.1:{free_port()}/ccguard"
    cfg = _config(tmp_path, url, free_port(), free_port(), free_port())
    proc = start_ccguard("serve", "--config", str(cfg))
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert proc.returncode != 0
    assert b"open failed" in err and b"Traceback" not in err


SPLIT_RCPTS = ("g1@example.com", "g2@example.net", "g3@example.com", "ia@example.org")
SPLIT = (
    b"From: Ann <ann@example.org>\r\nTo: g1@example.com, g2@example.net, g3@example.com\r\n"
    b"Cc: ia@example.org\r\nSubject: Training week\r\nMessage-ID: <pg-split-1@example.org>\r\n"
    b"\r\nHello everyone.\r\n"
)


def _send_split(port: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("mua.example.org")
        client.mail("ann@example.org")
        for rcpt in SPLIT_RCPTS:
            client.rcpt(rcpt)
        return client.data(SPLIT)[0]


async def test_split_ledger_on_postgresql_gives_everyone_one_copy_across_a_retry(
    pg_cluster: PgCluster, tmp_path: Path
) -> None:
    faulty = await FaultyUpstream(faults={"eod": reply("451 4.3.0 try later").on(2)}).start()
    url = pg_cluster.url(pg_cluster.create_database())
    smtp = free_port()
    cfg = tmp_path / "ccguard.toml"
    cfg.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{smtp}"\nhostname = "ccguard.test"\n'
        f'[upstream]\nhost = "127.0.0.1"\nport = {faulty.port}\nstarttls = "off"\n'
        '[organisation]\ninternal_domains = ["example.org"]\n'
        f'[quarantine]\ndatabase = "{url}"\n[admin]\nenabled = false\n'
        '[logging]\nhash_key = "test-key"\n'
        '[[policy.rules]]\nname = "split-all"\nmin_visible_external = 2\naction = "split"\n'
    )
    proc = start_ccguard("serve", "--config", str(cfg), env={"PGPASSWORD": pg_cluster.password})
    try:
        await asyncio.to_thread(wait_for_port, smtp, proc)
        assert await asyncio.to_thread(_send_split, smtp) == 451  # one copy deferred
        assert await asyncio.to_thread(_send_split, smtp) == 250  # the client's retry
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        await faulty.stop()
    assert proc.returncode == 0, err
    got = Counter(rcpt for message in faulty.messages for rcpt in message.rcpt_tos)
    assert got == Counter(SPLIT_RCPTS)  # everyone exactly once
