"""Users file, session cookies and the login throttle."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from relay.admin.sessions import Session, SessionCodec
from relay.credentials.hashing import HashingPool
from relay.credentials.throttle import LoginThrottle
from relay.credentials.users import UserDB, UsersFileError, hash_password, verify_password
from tests.helpers.waiting import wait_until


def test_password_hashes_are_salted_scrypt_and_verify() -> None:
    one, two = hash_password("pw"), hash_password("pw")
    assert one.startswith("scrypt$") and one != two
    assert verify_password("pw", one) and verify_password("pw", two)
    assert not verify_password("pW", one)
    assert not verify_password("pw", "plain$pw")


def test_users_file_is_0600_has_no_plain_text_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "users.json"
    db = UserDB(path)
    assert db.names() == [] and not db.verify("alice", "")
    assert db.set_password("alice", "hunter2 hunter2") is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "hunter2" not in path.read_text()
    other = UserDB(path)  # e.g. the running server
    other.set_password("bob", "pw")
    assert db.verify("bob", "pw")  # picked up the change on disk
    assert db.remove("alice") and not db.remove("alice")
    assert UserDB(path).names() == ["bob"]


@pytest.mark.parametrize("content", ["not json", '{"users": ["a"]}', '{"users": {"a": 1}}'])
def test_broken_users_file_is_reported(tmp_path: Path, content: str) -> None:
    path = tmp_path / "users.json"
    path.write_text(content)
    with pytest.raises(UsersFileError, match=r"users\.json"):
        UserDB(path)


def test_bad_names_and_empty_passwords_are_refused(tmp_path: Path) -> None:
    db = UserDB(tmp_path / "u.json")
    for name in ["", "a b", "x" * 65, "../etc"]:
        with pytest.raises(UsersFileError):
            db.set_password(name, "pw")
    with pytest.raises(UsersFileError):
        db.set_password("alice", "")
    assert not (tmp_path / "u.json").exists()


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_session_cookie_round_trip_forgery_expiry_and_revocation() -> None:
    clock = Clock()
    codec = SessionCodec("secret", 60, clock=clock)
    session = Session.new("alice", clock.now)
    value = codec.encode(session)
    assert codec.decode(value) == session
    sig = value.split(".")[1]
    forged = json.dumps({"s": session.sid, "c": session.csrf, "t": clock.now, "u": "root"})
    forged_body = base64.urlsafe_b64encode(forged.encode()).rstrip(b"=").decode()
    assert codec.decode(f"{forged_body}.{sig}") is None
    assert SessionCodec("other secret", 60, clock=clock).decode(value) is None
    assert codec.decode("garbage") is None and codec.decode(None) is None
    clock.now += 61
    assert codec.decode(value) is None
    clock.now -= 61
    codec.revoke(session)
    assert codec.decode(value) is None


def test_random_secret_sessions_do_not_survive_a_restart() -> None:
    session = Session.new("alice", 0.0)
    value = SessionCodec(None, 60, clock=lambda: 1.0).encode(session)
    assert SessionCodec(None, 60, clock=lambda: 1.0).decode(value) is None


def test_csrf_check() -> None:
    session = Session.new(None, 0)
    assert session.csrf_ok(session.csrf)
    assert not session.csrf_ok(None) and not session.csrf_ok("x")


def test_throttle_backs_off_per_ip_and_per_ip_and_user_and_stays_bounded() -> None:
    clock = Clock()
    throttle = LoginThrottle(free=2, user_free=5, base=1.0, cap=8.0, max_keys=6, clock=clock)
    for _ in range(2):
        assert throttle.wait_for("10.0.0.1", "alice") == 0
        throttle.failure("10.0.0.1", "alice")
    throttle.failure("10.0.0.1", "alice")
    assert throttle.wait_for("10.0.0.1", "alice") == 2.0
    assert throttle.wait_for("10.0.0.1", "bob") == 2.0  # same IP, other user
    assert throttle.wait_for("10.0.0.9", "ALICE") == 0  # other IP: alice is not locked out
    for _ in range(10):
        throttle.failure("10.0.0.1", "alice")
    assert throttle.wait_for("10.0.0.1", "alice") == 8.0  # capped
    clock.now += 8
    assert throttle.wait_for("10.0.0.1", "alice") == 0
    for i in range(10):
        throttle.failure(f"10.1.0.{i}", f"user{i}")
    assert len(throttle._records) == 6


def test_user_wide_limit_holds_back_only_clients_that_failed_before() -> None:
    clock = Clock()
    throttle = LoginThrottle(free=3, user_free=5, base=1.0, cap=60.0, clock=clock)
    for i in range(7):
        throttle.failure(f"203.0.113.{i}", "alice")  # one guess each, many addresses
    assert throttle.wait_for("203.0.113.1", "alice") == 4.0
    assert throttle.wait_for("198.51.100.7", "alice") == 0  # a clean client is always checked
    throttle.success("198.51.100.7", "alice")
    assert throttle.wait_for("203.0.113.1", "alice") == 0


async def test_attempts_from_one_ip_are_checked_one_at_a_time() -> None:
    throttle = LoginThrottle()
    inside: list[int] = []
    peak = 0

    async def attempt(ip: str) -> None:
        nonlocal peak
        async with throttle.serialised(ip):
            inside.append(1)
            peak = max(peak, len(inside))
            await asyncio.sleep(0.01)
            inside.pop()

    await asyncio.gather(*(attempt("10.0.0.1") for _ in range(5)))
    assert peak == 1
    await asyncio.gather(attempt("10.0.0.1"), attempt("10.0.0.2"))
    assert peak == 2
    assert len(throttle._locks) == 0  # nothing kept once nobody waits


async def test_hashing_pool_refuses_work_beyond_its_queue() -> None:
    pool = HashingPool(workers=1, max_waiting=2)
    release = threading.Event()  # the admitted jobs run until every job was submitted
    try:
        jobs = [asyncio.ensure_future(pool.run(release.wait, 30)) for _ in range(6)]
        await wait_until(lambda: sum(j.done() for j in jobs) == 3, "three jobs refused")
        assert not any(j.done() for j in jobs[:3])  # one running, two waiting
        release.set()
        results = await asyncio.gather(*jobs, return_exceptions=True)
    finally:
        release.set()
        pool.close()
    assert [type(r).__name__ for r in results] == ["bool"] * 3 + ["HashingBusy"] * 3
    assert pool.in_use == 0
