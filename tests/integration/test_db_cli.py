"""``ccguard db migrate|status|copy`` run as a real command against SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from relay.quarantine import RELEASE_AS_IS, SqliteStore
from relay.quarantine.pg import PgStore
from relay.quarantine.pg_schema import SCHEMA_VERSION as PG_VERSION
from relay.quarantine.sqlite_schema import SCHEMA_VERSION as SQLITE_VERSION
from tests.helpers.postgres import PgCluster
from tests.helpers.quarantine_store import new_message
from tests.integration.conftest import pg_options

REPO = Path(__file__).resolve().parents[2]


def _ccguard(
    cluster: PgCluster, tmp_path: Path, database: str, *args: str
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "ccguard.toml"
    config.write_text(f'[quarantine]\ndatabase = "{database}"\nconnect_timeout = 3.0\n')
    env = {**os.environ, "PGPASSWORD": cluster.password, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "relay", "--config", str(config), *args],
        capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path,
    )  # fmt: skip


def test_migrate_then_status_on_postgresql(pg_cluster: PgCluster, tmp_path: Path) -> None:
    url = pg_cluster.url(pg_cluster.create_database())
    status = _ccguard(pg_cluster, tmp_path, url, "db", "status")
    assert status.returncode == 1
    assert f"schema version 0 (needs migrating to {PG_VERSION})" in status.stdout
    migrated = _ccguard(pg_cluster, tmp_path, url, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert f"schema version {PG_VERSION} (was 0)" in migrated.stdout
    assert pg_cluster.password not in migrated.stdout + migrated.stderr
    status = _ccguard(pg_cluster, tmp_path, url, "db", "status")
    assert status.returncode == 0, status.stderr
    assert f"schema version {PG_VERSION} (current)" in status.stdout and "held=0" in status.stdout


def test_status_on_sqlite(pg_cluster: PgCluster, tmp_path: Path) -> None:
    assert _ccguard(pg_cluster, tmp_path, "q.db", "db", "status").returncode == 1
    assert _ccguard(pg_cluster, tmp_path, "q.db", "db", "migrate").returncode == 0
    status = _ccguard(pg_cluster, tmp_path, "q.db", "db", "status")
    assert f"schema version {SQLITE_VERSION} (current)" in status.stdout and status.returncode == 0


async def test_copy_moves_everything_once(pg_cluster: PgCluster, tmp_path: Path) -> None:
    source = SqliteStore(tmp_path / "old.db")
    await source.open()
    ids = [await source.put(new_message(received_at=1000.0 + i)) for i in range(3)]
    await source.claim(ids[0], "alice")
    await source.mark_released(ids[0], "alice", RELEASE_AS_IS)
    await source.delete(ids[1], "bob")
    await source.record_copies("split-key", ["c1", "c2"])
    await source.add_audit("alice", "release", ids[0], "ok", "mode=as-is")
    request = await source.add_request(ids[2], "sender:h:abc", "the board asked", 2)
    await source.approve_request(request.id, "alice", "fine")
    await source.set_delay(ids[2], 5000.0, "hidden")
    assert await source.use_token("tok1", ids[2], "request")
    expected_request = await source.get_request(request.id)
    expected = {mid: await source.get(mid) for mid in ids}
    await source.close()

    url = pg_cluster.url(pg_cluster.create_database())
    done = _ccguard(
        pg_cluster, tmp_path, "unused.db", "db", "copy", "--from", "old.db", "--to", url
    )
    assert done.returncode == 0, done.stderr
    assert (
        "copied 3 message(s), 2 ledger row(s), 1 audit entry, 4 self-service row(s)" in done.stdout
    )
    again = _ccguard(
        pg_cluster, tmp_path, "unused.db", "db", "copy", "--from", "old.db", "--to", url
    )
    assert again.returncode == 1 and "already holds data" in again.stderr
    # The operator's other commands work on the copy as they did on the file.
    listed = _ccguard(pg_cluster, tmp_path, url, "quarantine", "list", "--status", "held")
    assert listed.returncode == 0, listed.stderr
    assert ids[2] in listed.stdout and ids[0] not in listed.stdout

    target = PgStore(url, pg_options(pg_cluster))
    await target.open()
    try:
        assert {mid: await target.get(mid) for mid in ids} == expected
        assert [m.id for m in (await target.list()).items] == ids[::-1]
        assert await target.copies_done("split-key") == {"c1", "c2"}
        assert [(e.actor, e.target) for e in await target.list_audit()] == [("alice", ids[0])]
        # A pending request (with its first of two approvals), an undo hold and a used
        # link go over: the sender's next step and the timer work on PostgreSQL.
        assert await target.get_request(request.id) == expected_request
        assert [t.message_id for t in await target.due_delays()] == [ids[2]]
        assert await target.token_used("tok1") == "request"
        await target.add_audit("carol", "view", ids[2], "ok")  # the id sequence moved on
        assert len(await target.list_audit()) == 2
    finally:
        await target.close()
