"""The cheaper JSON rendering writes the very bytes the careful walk wrote, and
still hashes an address wherever it sits (keys, nested dicts and lists)."""

from __future__ import annotations

import io
import logging
import re
from pathlib import PurePosixPath
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.observability.logging import configure_logging, scrub_addresses, scrubbed_json
from relay.observability.redact import Redactor
from relay.settings import LoggingSettings
from tests.helpers.observability import captured_logging, json_lines

KEY = "golden-key"
EXPOSURE = {
    "visible_total": 1, "visible_internal": 0, "visible_external": 1, "external_domains": 1,
    "unparseable": 0, "per_header": {"to": 1, "cc": 0, "resent-to": 0, "resent-cc": 0},
    "header_too_large": False,
    "calendar": {"invitation": False, "attendees_internal": 0, "attendees_external": 0,
                 "truncated": False, "methods": ["REQUEST"]},
}  # fmt: skip
TRANSACTION: dict[str, Any] = {
    "queue_id": "T4VBSWPK7TN9", "client_ip": "127.0.0.1", "auth_user": None, "tls": "TLSv1.3",
    "tls_cipher": None, "sender": "h:c9f2b82893dcad27", "recipients": 1, "size": 4232,
    "line_endings_normalised": False, "action": "pass", "rule": 'größe "quoted" \\ tab\t',
    "calendar_fallback": None, "exposure": EXPOSURE, "reply_code": 250, "reply_status": "2.0.0",
    "inspect_seconds": 8e-05, "duration_seconds": 0.004887,
}  # fmt: skip
# Written by the code before the change (main at 60eb2cf), timestamp replaced by "T".
GOLDEN_TRANSACTION = (
    '{"timestamp": "T", "level": "info", "logger": "ccguard", "event": "transaction", '
    '"queue_id": "T4VBSWPK7TN9", "client_ip": "127.0.0.1", "auth_user": null, "tls": "TLSv1.3", '
    '"tls_cipher": null, "sender": "h:c9f2b82893dcad27", "recipients": 1, "size": 4232, '
    '"line_endings_normalised": false, "action": "pass", '
    '"rule": "größe \\"quoted\\" \\\\ tab\\t", "calendar_fallback": null, '
    '"exposure": {"visible_total": 1, "visible_internal": 0, "visible_external": 1, '
    '"external_domains": 1, "unparseable": 0, '
    '"per_header": {"to": 1, "cc": 0, "resent-to": 0, "resent-cc": 0}, '
    '"header_too_large": false, "calendar": {"invitation": false, "attendees_internal": 0, '
    '"attendees_external": 0, "truncated": false, "methods": ["REQUEST"]}}, '
    '"reply_code": 250, "reply_status": "2.0.0", "inspect_seconds": 8e-05, '
    '"duration_seconds": 0.004887}\n'
)
GOLDEN_OTHERS = (
    '{"timestamp": "T", "level": "warning", "logger": "asyncio", '
    '"event": "slow callback took 0.2s", "task": "t1"}\n'
    '{"timestamp": "T", "level": "info", "logger": "uvicorn.access", "event": "http_request", '
    '"client": "127.0.0.1:5", "method": "GET", "path": "/metrics", "http_version": "1.1", '
    '"status": 200}\n'
    '{"timestamp": "T", "level": "error", "logger": "ccguard", "event": "failed", '
    '"queue_id": "Q1", "exception": "Traceback (most recent call last):\\n  File X, in '
    'test_library_and_exception_lines_are_unchanged\\n    raise ValueError(\\"bad rcpt\\")\\n'
    'ValueError: bad rcpt"}\n'
)


def _without_timestamps(text: str) -> str:
    text = re.sub(r'"timestamp": "[^"]*"', '"timestamp": "T"', text)
    # A stdlib record formatted by another handler first (pytest's) carries its
    # "message" as an extra field: the same before and after, but not in the golden.
    text = re.sub(r', "message": "[^"]*"', "", text)
    return re.sub(r'File \\"[^"]*\\", line \d+', "File X", text)


def test_transaction_line_is_byte_for_byte_the_old_one() -> None:
    with captured_logging(hash_key=KEY, level="info") as out:
        structlog.get_logger("ccguard").info("transaction", **TRANSACTION)
        structlog.get_logger("ccguard").bind().info("transaction", **TRANSACTION)
    assert _without_timestamps(out.getvalue()) == GOLDEN_TRANSACTION * 2


def test_library_and_exception_lines_are_unchanged() -> None:
    with captured_logging(hash_key=KEY, level="info") as out:
        logging.getLogger("asyncio").warning("slow callback %s", "took 0.2s", extra={"task": "t1"})
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/metrics", "1.1", 200
        )
        try:
            raise ValueError("bad rcpt")
        except ValueError:
            structlog.get_logger("ccguard").exception("failed", queue_id="Q1")
    assert _without_timestamps(out.getvalue()) == GOLDEN_OTHERS


@pytest.mark.logs_may_contain_addresses  # it feeds addresses to the safety net on purpose
def test_an_address_anywhere_in_a_transaction_line_is_hashed() -> None:
    exposure = {
        **EXPOSURE,
        "per_header": {"to": 1, "to ann@example.org": 2},
        "calendar": {"methods": ["REQUEST", "bob@example.com"], "organiser": ("cy%40example.net",)},
        "nested": [{"deep": [{'"dee doe"@example.org': "eve@example.com"}]}],
    }
    with captured_logging(hash_key=KEY, level="info") as out:
        structlog.get_logger("ccguard").bind().info(
            "transaction", **{**TRANSACTION, "rule": "fay@example.net", "exposure": exposure},
            path=PurePosixPath("/spool/gus@example.org"),
        )  # fmt: skip
    text = out.getvalue()
    for person in ("ann@", "bob@", "cy%40", "cy@", "dee doe", "eve@", "fay@", "gus@"):
        assert person not in text
    line = json_lines(text)[0]
    token = Redactor(KEY).address
    assert line["rule"] == token("fay@example.net")
    assert line["path"] == f"/spool/{token('gus@example.org')}"
    got = line["exposure"]
    assert got["per_header"] == {"to": 1, f"to {token('ann@example.org')}": 2}
    assert got["calendar"]["methods"] == ["REQUEST", token("bob@example.com")]
    assert got["calendar"]["organiser"] == [token("cy@example.net")]
    assert got["nested"] == [{"deep": [{token('"dee doe"@example.org'): token("eve@example.com")}]}]
    assert got["visible_total"] == 1 and list(line)[:4] == ["timestamp", "level", "logger", "event"]


@pytest.mark.logs_may_contain_addresses  # it feeds addresses to the safety net on purpose
@pytest.mark.parametrize("where", ["value", "key", "list"])
def test_an_url_encoded_address_alone_in_a_line_is_hashed(where: str) -> None:
    encoded = "/r/cy%40example.net"
    exposure = {
        "value": {"calendar": {"organiser": encoded}},
        "key": {"per_header": {encoded: 1}},
        "list": {"calendar": {"methods": ["REQUEST", encoded]}},
    }[where]
    with captured_logging(hash_key=KEY, level="info") as out:
        structlog.get_logger("ccguard").bind().info(
            "transaction", **{**TRANSACTION, "exposure": exposure}
        )
    text = out.getvalue()
    assert "cy%40" not in text and "@" not in text
    assert f"/r/{Redactor(KEY).address('cy@example.net')}" in text


_PIECES = ["ann", "@", "example.org", "%40", "%4", "0", '"', "\\", "\n", "\x00", " ", "é", "x."]
_PIECES += ["bob@example.com", "cy%40example.net", '"dee doe"@example.org']
_TEXT = st.lists(st.sampled_from(_PIECES), max_size=6).map("".join)
_PLAIN = st.none() | st.booleans() | st.integers() | st.floats() | _TEXT
_KEYS = _TEXT | st.integers() | st.booleans() | st.none()
_VALUES = st.recursive(
    _PLAIN | st.binary(max_size=4) | st.builds(PurePosixPath, _TEXT),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(_KEYS, inner, max_size=3)
    ),
    max_leaves=12,
)
_EVENTS = st.dictionaries(
    st.sampled_from(["event", "level", "sender", "exposure"]) | _TEXT, _VALUES
)


@settings(max_examples=400, deadline=None)
@given(_EVENTS)
def test_the_fast_renderer_equals_scrub_then_render(event: dict[str, Any]) -> None:
    redactor = Redactor(KEY)
    careful = structlog.processors.JSONRenderer(ensure_ascii=False)
    expected = careful(None, "info", scrub_addresses(redactor)(None, "info", dict(event)))
    assert scrubbed_json(redactor)(None, "info", dict(event)) == expected


def test_ccguard_lines_still_pass_the_stdlib_logger_levels_and_handlers() -> None:
    seen: list[logging.LogRecord] = []
    extra = logging.Handler()
    extra.emit = seen.append  # type: ignore[method-assign]
    quiet = logging.getLogger("ccguard.quiet")
    with captured_logging(hash_key=KEY, level="info") as out:
        logging.getLogger().addHandler(extra)
        quiet.setLevel(logging.ERROR)
        try:
            structlog.get_logger("ccguard.quiet").warning("dropped")
            structlog.get_logger("ccguard.quiet").error("kept", queue_id="Q2")
            structlog.get_logger("ccguard").bind().info("also kept")
        finally:
            quiet.setLevel(logging.NOTSET)
            logging.getLogger().removeHandler(extra)
    assert [line["event"] for line in json_lines(out.getvalue())] == ["kept", "also kept"]
    assert [(r.name, r.levelno) for r in seen] == [("ccguard.quiet", 40), ("ccguard", 20)]


def test_a_logger_without_a_name_is_still_named_after_its_module() -> None:
    """``structlog.get_logger()`` names the stdlib logger after the calling module:
    the caller-less factory must not put its own module in the ``logger`` field."""
    with captured_logging(hash_key=KEY, level="info") as out:
        structlog.get_logger().info("unnamed")
    (line,) = json_lines(out.getvalue())
    assert line["logger"] == __name__


@pytest.mark.logs_may_contain_addresses  # the suite's scan reads the raw record
def test_a_line_that_cannot_be_rendered_is_reported_without_its_contents(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The stdlib's handleError printed the raw event (addresses in clear) to stderr.
    out = io.StringIO()
    configure_logging(LoggingSettings(format="json", level="info", hash_key="k"), out)

    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("no text")

    structlog.get_logger("ccguard").info("transaction", sender="alice@example.org", x=Unprintable())
    err = capsys.readouterr().err
    assert "alice@example.org" not in err and "alice" not in out.getvalue()
    assert "ccguard: a log line from ccguard was lost (ValueError)" in err
