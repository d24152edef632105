"""``[admin] session_key_file``: one key shared by every instance that reads the file."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from relay.admin.sessions import Session, SessionCodec, load_session_key
from relay.errors import ConfigError


def test_a_missing_file_is_created_private_and_read_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "session.key"
    key = load_session_key(path)
    assert len(key) >= 32 and load_session_key(path) == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["session.key"]  # nothing left aside


def test_instances_creating_the_file_at_once_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "session.key"
    keys: list[str] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait(timeout=10)
        keys.append(load_session_key(path))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(keys) == 8 and len(set(keys)) == 1


def test_a_cookie_signed_with_the_shared_key_is_valid_for_the_other_instance(
    tmp_path: Path,
) -> None:
    path = tmp_path / "session.key"
    a = SessionCodec(load_session_key(path), 3600)
    b = SessionCodec(load_session_key(path), 3600)
    alone = SessionCodec(None, 3600)
    session = Session.new("alice", a.now())
    cookie = a.encode(session)
    assert b.decode(cookie) == session
    assert alone.decode(cookie) is None


def test_a_short_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "session.key"
    path.write_text("short\n")
    with pytest.raises(ConfigError, match="fewer than 32 characters"):
        load_session_key(path)
