"""Log lines are JSON (or console text), UTC-stamped, and never hold a clear address."""

from __future__ import annotations

import logging
import re
import warnings

import pytest
import structlog

from relay.observability.redact import Redactor
from tests.helpers.observability import captured_logging, json_lines

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def test_structlog_and_stdlib_lines_are_json_with_utc_timestamps() -> None:
    with captured_logging(hash_key="k") as out:
        structlog.get_logger("relay.smtp").info("transaction", queue_id="Q1", recipients=3)
        logging.getLogger("asyncio").warning("slow callback %s", "took 0.2s")
        logging.getLogger("mail.log").error("peer went away")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    lines = json_lines(out.getvalue())
    assert [line["event"] for line in lines[:3]] == [
        "transaction",
        "slow callback took 0.2s",
        "peer went away",
    ]
    first = lines[0]
    assert first["queue_id"] == "Q1" and first["recipients"] == 3
    assert first["level"] == "info" and first["logger"] == "relay.smtp"
    assert all(ISO_UTC.match(line["timestamp"]) for line in lines)
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert any("deprecated thing" in line["event"] for line in lines[3:])


def test_level_filters_debug_and_aiosmtpd_chatter() -> None:
    with captured_logging(hash_key="k", level="info") as out:
        structlog.get_logger("relay").debug("hidden")
        logging.getLogger("mail.log").info("Peer: 127.0.0.1")
        structlog.get_logger("relay").info("shown")
    assert [line["event"] for line in json_lines(out.getvalue())] == ["shown"]
    with captured_logging(hash_key="k", level="debug") as out:
        structlog.get_logger("relay").debug("now shown")
    assert [line["event"] for line in json_lines(out.getvalue())] == ["now shown"]


def test_console_format_is_human_readable_not_json() -> None:
    with captured_logging(hash_key="k", format="console") as out:
        structlog.get_logger("relay.smtp").warning("upstream_slow", seconds=12)
    text = out.getvalue()
    assert "upstream_slow" in text and "seconds=12" in text and "[relay.smtp]" in text
    assert not text.lstrip().startswith("{")


@pytest.mark.logs_may_contain_addresses  # it feeds addresses to the safety net on purpose
def test_safety_net_hashes_clear_addresses_everywhere() -> None:
    key = "net-key"
    with captured_logging(hash_key=key) as out:
        log = structlog.get_logger("relay.smtp")
        log.info("oops ann@example.org", sender="bob@example.com", refused={"cy@example.net": 550})
        logging.getLogger("mail.log").warning("from %s", "<dee@example.org>")
        try:
            raise ValueError("bad rcpt eve@example.org")
        except ValueError:
            log.exception("failed", rcpts=["fay@example.com"], raw=b"gus@example.net")
    text = out.getvalue()
    for person in ("ann@", "bob@", "cy@", "dee@", "eve@", "fay@", "gus@"):
        assert person not in text
    lines = json_lines(text)
    redactor = Redactor(key)
    assert lines[0]["sender"] == redactor.address("bob@example.com")
    assert lines[0]["refused"] == {redactor.address("cy@example.net"): 550}
    assert "ValueError: bad rcpt h:" in lines[2]["exception"]


def test_missing_hash_key_warns_once_and_still_logs() -> None:
    with captured_logging() as out:
        structlog.get_logger("relay").info("started")
    lines = json_lines(out.getvalue())
    assert [line["event"] for line in lines] == ["hash_key_unset", "started"]
    assert lines[0]["level"] == "warning" and "hash_key" in lines[0]["detail"]


def test_configuring_twice_replaces_the_handler() -> None:
    with captured_logging(hash_key="k"), captured_logging(hash_key="k") as second:
        structlog.get_logger("relay").info("once")
        ours = [h for h in logging.getLogger().handlers if getattr(h, "_ccguard_handler", False)]
    assert len(ours) == 1
    assert [line["event"] for line in json_lines(second.getvalue())] == ["once"]
