"""Fixtures shared by every area: a recording upstream and a running relay."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.helpers.upstream import RecordingUpstream


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingUpstream]:
    server = await RecordingUpstream().start()
    try:
        yield server
    finally:
        await server.stop()
