"""``ccguard requests ...`` and the four-eyes guard of ``ccguard quarantine release`` as
real subprocesses on the server's database."""

from __future__ import annotations

import asyncio
import getpass
import sys
from pathlib import Path

from relay.quarantine import HELD, RELEASED, SqliteStore
from tests.helpers.admin import new_message, recording_upstream, write_config

ACTOR = f"cli:{getpass.getuser()}"
ROOT = Path(__file__).resolve().parents[2]


async def _run(config: Path, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", *args, "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_lists_and_approves_with_four_eyes(tmp_path: Path) -> None:
    async with recording_upstream() as upstream:
        db = tmp_path / "q.db"
        config = write_config(tmp_path / "c.toml", db=db, users=tmp_path / "u.json",
                              upstream_port=upstream.port)  # fmt: skip
        with config.open("a") as fh:
            fh.write('\n[[policy.rules]]\nname = "strict"\naction = "quarantine"\n'
                     "min_visible_external = 3\nfour_eyes = true\n")  # fmt: skip
        store = SqliteStore(db)
        await store.open()
        try:
            mid = await store.put(new_message(rule="strict"))
            code, _, err = await _run(config, "quarantine", "release", mid)
            assert code == 3 and "two reviewers" in err
            req = await store.add_request(mid, "sender:h:abc", "it is a public list", 2)
            code, out, _ = await _run(config, "requests", "list")
            assert code == 0 and req.id in out and "0/2" in out and "public list" in out
            await store.approve_request(req.id, "alice")
            code, out, _ = await _run(config, "requests", "approve", req.id, "--comment", "ok")
            assert code == 0 and "delivered as sent" in out, out
            code, _, err = await _run(config, "requests", "approve", req.id)
            assert code == 1 and "approved" in err
            stored = await store.get(mid)
            assert stored is not None and (stored.status, stored.released_by) == (RELEASED, ACTOR)
            assert len([m for m in upstream.messages if m.mail_from != "<>"]) == 1
            other = await store.put(new_message(rule="strict"))
            own = await store.add_request(other, ACTOR, "mine", 2)
            code, _, err = await _run(config, "requests", "approve", own.id)
            assert code == 3 and "you made this request" in err
            assert (await store.get(other)).status == HELD  # type: ignore[union-attr]
        finally:
            await store.close()
