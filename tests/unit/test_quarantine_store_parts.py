"""Pure parts of the quarantine store: subject decoding, backend choice, interface objects."""

from __future__ import annotations

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from relay.envelope import Envelope
from relay.errors import ConfigError
from relay.inspect.exposure import Exposure
from relay.policy.verdict import Verdict
from relay.quarantine import NewMessage, Page, SqliteStore, open_store
from relay.quarantine.pg import PgStore
from relay.quarantine.pg_conn import PgOptions, build_conninfo, describe
from relay.quarantine.sqlite_sql import new_message_id
from relay.quarantine.subject import MAX_SUBJECT_CHARS, decode_subject
from relay.settings import Action, QuarantineSettings


@pytest.mark.parametrize(
    ("raw", "subject"),
    [
        (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n  an alle\r\n\r\nbody", "Grüße an alle"),
        ("Subject: Größe\r\n\r\nSubject: not a header\r\n".encode(), "Größe"),
        (b"Subject: =?iso-8859-1?b?Y2Fm6Q==?=\n\nbody", "café"),
        (b"From: a@example.org\r\n\r\nSubject: in the body\r\n", ""),
        (b"Subject: caf\xe9\r\n\r\n", "caf\ufffd"),
        (b"", ""),
    ],
)
def test_decode_subject(raw: bytes, subject: str) -> None:
    assert decode_subject(raw) == subject


def test_decode_subject_caps_length() -> None:
    assert len(decode_subject(b"Subject: " + b"x" * 5000 + b"\r\n\r\n")) == MAX_SUBJECT_CHARS


def test_open_store_picks_sqlite_for_a_path() -> None:
    store = open_store(QuarantineSettings(database="var/q.db"))
    assert isinstance(store, SqliteStore)
    assert str(store.path) == "var/q.db"


@pytest.mark.parametrize(
    "database",
    [
        "postgresql://ccguard@db.example.org:5433/ccguard?sslmode=require",
        "postgres://db.example.org/x",
    ],
)
def test_open_store_picks_postgresql_for_a_url_without_connecting(database: str) -> None:
    settings = QuarantineSettings(database=database, pool_size=7, statement_timeout=3.0)
    store = open_store(settings)
    assert isinstance(store, PgStore)
    assert (store.options.pool_size, store.options.statement_timeout) == (7, 3.0)
    assert store.where.startswith("postgres")


def test_postgresql_password_and_timeouts_go_to_libpq(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret:with spaces\n")
    info = conninfo_to_dict(
        build_conninfo(
            "postgresql://ccguard@db.example.org/ccguard?sslmode=verify-full",
            PgOptions(password_file=str(secret), connect_timeout=2.4, statement_timeout=1.5),
        )
    )
    assert info["password"] == "s3cret:with spaces" and info["sslmode"] == "verify-full"
    assert info["connect_timeout"] == "2" and info["options"] == "-c statement_timeout=1500"
    with_options = conninfo_to_dict(
        build_conninfo("postgresql://db.example.org/q?options=-csearch_path%3Dccguard", PgOptions())
    )
    assert with_options["options"] == "-csearch_path=ccguard -c statement_timeout=10000"
    assert describe("postgresql://u:hunter2@db.example.org:6432/q") == (
        "postgresql://u@db.example.org:6432/q"
    )


@pytest.mark.parametrize(
    ("database", "reason"),
    [
        ("mysql://db.example.org/x", "unknown database URL scheme 'mysql'"),
        ("  ", "must name an SQLite file"),
    ],
)
def test_open_store_refuses_unknown_backends(database: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_store(QuarantineSettings(database=database))
    (key, text), *_ = info.value.problems
    assert key == "quarantine.database" and reason in text


def test_new_message_from_verdict() -> None:
    envelope = Envelope(
        mail_from="a@example.org",
        rcpt_tos=("b@example.com",),
        mail_options=("BODY=8BITMIME",),
        client_ip="127.0.0.1",
        client_helo="h.example.org",
        queue_id="QID",
    )
    exposure = Exposure(visible_total=3, visible_external=3, external_addresses=("x@example.com",))
    verdict = Verdict(Action.QUARANTINE, "bulk", "3 external addresses visible", exposure)
    new = NewMessage.from_verdict(envelope, b"raw", verdict)
    assert (new.mail_from, new.rcpt_tos, new.queue_id, new.client_helo) == (
        "a@example.org", ("b@example.com",), "QID", "h.example.org",
    )  # fmt: skip
    assert (new.action, new.rule, new.message) == ("quarantine", "bulk", b"raw")
    assert new.exposure["visible_external"] == 3
    assert "x@example.com" not in repr(new.exposure)  # counts only, never addresses


def test_page_has_more() -> None:
    assert Page(items=(), total=5, limit=2, offset=5).has_more is False
    assert Page(items=(), total=5, limit=2, offset=0).has_more is True


def test_message_ids_are_alphanumeric_so_the_cli_never_reads_one_as_an_option() -> None:
    ids = {new_message_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 16 and i.isascii() and i.isalnum() for i in ids)
