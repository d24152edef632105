"""Fixtures shared by every area: a recording upstream, and the suite-wide log privacy check."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import AsyncIterator, Iterator

import pytest

from relay.observability.logging import configure_logging
from relay.settings import LoggingSettings
from tests.helpers.privacy import LOG_STREAMS, clear_addresses, register_stream
from tests.helpers.upstream import RecordingUpstream


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI a skipped test is a failed test: nothing may be skipped silently there."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingUpstream]:
    server = await RecordingUpstream().start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(autouse=True)
def no_clear_addresses_in_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test doubles as a privacy test: after it, no log line it caused may hold
    a clear-text address.  Scanned: ccguard's process-wide logging (stdlib and
    structlog, as `ccguard serve` configures it) and every in-test relay's log."""
    sink = register_stream(io.StringIO())
    configure_logging(LoggingSettings(format="json", level="info", hash_key="test-key"), sink)
    logging.captureWarnings(False)  # leave warnings to pytest (and to tests that capture them)
    # The scan reads every record as it was logged, before the address safety net
    # of configure_logging could hide a leak.
    raw = logging.StreamHandler(register_stream(io.StringIO()))
    logging.getLogger().addHandler(raw)
    first = len(LOG_STREAMS) - 1
    offsets = [len(s.getvalue()) for s in LOG_STREAMS[:first]]
    yield
    logging.getLogger().removeHandler(raw)
    texts = [s.getvalue()[o:] for s, o in zip(LOG_STREAMS[:first], offsets, strict=True)]
    texts += [s.getvalue() for s in LOG_STREAMS[first:]]
    leaks = sorted({a for text in texts for a in clear_addresses(text)})
    if leaks and not request.node.get_closest_marker("logs_may_contain_addresses"):
        pytest.fail(f"clear-text addresses in log output: {leaks[:5]}", pytrace=False)
