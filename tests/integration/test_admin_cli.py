"""``ccguard quarantine ...`` and ``ccguard admin ...`` as real subprocesses."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from relay.credentials.users import UserDB
from relay.quarantine import SqliteStore
from tests.helpers.admin import (
    EXTERNAL_RCPTS,
    RecordingUpstream,
    new_message,
    recording_upstream,
    write_config,
)

ACTOR = f"cli:{getpass.getuser()}"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Cli:
    config: Path
    store: SqliteStore
    upstream: RecordingUpstream
    users: Path

    async def run(self, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay", *args, "--config", str(self.config),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()


@pytest.fixture
async def cli(tmp_path: Path) -> AsyncIterator[Cli]:
    async with recording_upstream() as upstream:
        db, users = tmp_path / "q.db", tmp_path / "users.json"
        config = write_config(
            tmp_path / "ccguard.toml", db=db, users=users, upstream_port=upstream.port
        )
        store = SqliteStore(db)
        await store.open()  # open while the CLI runs: the server's situation
        try:
            yield Cli(config, store, upstream, users)
        finally:
            await store.close()


async def _audit(cli: Cli, target: str) -> list[tuple[str, str, str]]:
    return [
        (e.actor, e.action, e.result) for e in reversed(await cli.store.list_audit(target=target))
    ]


async def test_list_plain_and_json(cli: Cli) -> None:
    first = await cli.store.put(new_message("first", received_at=1_700_000_000))
    second = await cli.store.put(new_message("second", received_at=1_700_000_100))
    code, out, _ = await cli.run("quarantine", "list")
    assert code == 0
    assert out.index(second) < out.index(first)  # newest first
    assert "2 of 2 message(s)" in out
    code, out, _ = await cli.run("quarantine", "list", "--json", "--status", "held")
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [second, first]
    assert rows[0]["exposure"]["visible_external"] == len(EXTERNAL_RCPTS)
    code, out, _ = await cli.run("quarantine", "list", "--json", "--status", "released")
    assert json.loads(out) == []


async def test_show_prints_recipients_and_text_and_is_audited(cli: Cli) -> None:
    msg_id = await cli.store.put(new_message())
    code, out, _ = await cli.run("quarantine", "show", msg_id)
    assert code == 0
    assert "trainee0@example.com" in out and "training starts on Monday" in out
    assert f"{len(EXTERNAL_RCPTS)} external addresses" in out
    assert await _audit(cli, msg_id) == [(ACTOR, "view", "ok")]
    code, _, err = await cli.run("quarantine", "show", "nosuchid")
    assert code == 1 and "no quarantined message" in err


async def test_show_of_a_message_with_malformed_headers_works(cli: Cli) -> None:
    raw = b'From: a@example.org\r\nTo: "\r\nCc: a@[\r\n\r\nStill readable\r\n'
    msg_id = await cli.store.put(dataclasses.replace(new_message(), message=raw))
    code, out, err = await cli.run("quarantine", "show", msg_id)
    assert (code, err) == (0, "")
    assert "Still readable" in out
    assert await _audit(cli, msg_id) == [(ACTOR, "view", "ok")]


async def test_release_hidden_then_again_is_refused(cli: Cli) -> None:
    msg_id = await cli.store.put(new_message())
    code, out, err = await cli.run("quarantine", "release", msg_id, "--hidden")
    assert code == 0, err
    assert "hidden" in out and "250" in out
    [got] = cli.upstream.messages
    assert b"trainee0@example.com" not in got.data.split(b"\r\n\r\n")[0]
    code, _, err = await cli.run("quarantine", "release", msg_id)
    assert code == 1 and "already released" in err
    assert len(cli.upstream.messages) == 1
    assert await _audit(cli, msg_id) == [(ACTOR, "release", "ok"), (ACTOR, "release", "conflict")]


async def test_release_with_upstream_down_keeps_it_held(cli: Cli) -> None:
    msg_id = await cli.store.put(new_message())
    await cli.upstream.stop()
    code, _, err = await cli.run("quarantine", "release", msg_id)
    assert code == 1 and "still held" in err
    stored = await cli.store.get(msg_id)
    assert stored is not None and stored.status == "held"


async def test_delete_and_purge(cli: Cli) -> None:
    old = await cli.store.put(new_message("old", received_at=1_000_000_000))
    doomed = await cli.store.put(new_message("doomed"))
    code, out, _ = await cli.run("quarantine", "delete", doomed)
    assert code == 0 and doomed in out
    stored = await cli.store.get(doomed)
    assert stored is not None and stored.status == "deleted" and stored.deleted_by == ACTOR
    code, out, _ = await cli.run("quarantine", "purge", "--older-than", "30d")
    assert code == 0 and "purged 1 message(s)" in out
    assert await cli.store.get(old) is None
    assert await cli.store.get(doomed) is not None
    code, _, err = await cli.run("quarantine", "purge", "--older-than", "30 weeks")
    assert code == 2 and "not an age" in err


async def test_add_and_remove_users(cli: Cli) -> None:
    code, out, _ = await cli.run(
        "admin", "add-user", "bob", "--password-stdin", stdin=b"s3cret pw\n"
    )
    assert code == 0 and "added admin user bob" in out
    assert stat.S_IMODE(os.stat(cli.users).st_mode) == 0o600
    assert "s3cret" not in cli.users.read_text()
    assert UserDB(cli.users).verify("bob", "s3cret pw")
    code, _, _ = await cli.run("admin", "add-user", "bob", "--password-stdin", stdin=b"new pw\n")
    assert code == 0 and UserDB(cli.users).verify("bob", "new pw")
    code, out, _ = await cli.run("admin", "remove-user", "bob")
    assert code == 0 and not UserDB(cli.users).exists("bob")
    code, _, err = await cli.run("admin", "remove-user", "bob")
    assert code == 1 and "no admin user" in err
    code, _, err = await cli.run("admin", "add-user", "bad name", "--password-stdin", stdin=b"x\n")
    assert code == 1 and "invalid user name" in err


async def test_release_modes_are_shown_by_their_public_names(cli: Cli) -> None:
    hidden = await cli.store.put(new_message("hidden one"))
    as_sent = await cli.store.put(new_message("as sent"))
    assert (await cli.run("quarantine", "release", hidden, "--hidden"))[0] == 0
    assert (await cli.run("quarantine", "release", as_sent))[0] == 0
    _, out, _ = await cli.run("quarantine", "list", "--status", "released", "--json")
    modes = {row["id"]: row["release_mode"] for row in json.loads(out)}
    assert modes == {hidden: "hidden", as_sent: "as-is"}
    _, out, _ = await cli.run("quarantine", "show", hidden, "--json")
    assert json.loads(out)["release_mode"] == "hidden"
    code, out, err = await cli.run("quarantine", "show", hidden)
    assert code == 0
    assert f"by {ACTOR} (hidden)" in out and "Released:" in out
    assert err == ""  # CLI actions go to the audit table only, no log line on stderr
    viewed = (ACTOR, "view", "ok")
    assert await _audit(cli, hidden) == [(ACTOR, "release", "ok"), viewed, viewed]
