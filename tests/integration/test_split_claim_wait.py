"""``[quarantine] claim_wait`` bounds a split retry's wait also behind an attempt of
the SAME instance.

A retry through another instance waits for the lease at most ``claim_wait``
seconds and then gets ``451 4.3.0``.  A retry through the same instance first
waited on the in-process lock in front of the lease, for as long as the first
attempt took (here: as long as the upstream kept its DATA unanswered), past
``claim_wait`` and towards the client's own timeout.  Real ``ccguard serve``,
real SQLite file, real upstream.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers.instances import start_instance, stop_instance, wait_ready, write_instance
from tests.helpers.multi import RCPTS, metric, per_rcpt, send, split_message
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import Gate, wait_until


@pytest.fixture
async def upstream() -> AsyncIterator[RecordingUpstream]:
    up = await RecordingUpstream().start()
    try:
        yield up
    finally:
        await up.stop()


async def test_a_retry_through_the_same_instance_gets_451_after_claim_wait(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    instance = write_instance(
        tmp_path, "a", upstream_port=upstream.port, database=tmp_path / "q.db", claim_wait=1
    )
    gate = Gate(first=1)  # the first attempt's first copy waits at DATA until opened
    upstream.data_gate = gate.hold
    message = split_message("same-instance")
    try:
        start_instance(instance)
        await asyncio.to_thread(wait_ready, instance)
        first = asyncio.create_task(asyncio.to_thread(send, instance, message))
        await wait_until(lambda: gate.waiting == 1, "the first attempt reached DATA")
        try:
            # claim_wait is 1 s; 20 s is only the bound of this test (the old code
            # answered once the gate opened, i.e. never while it was held).
            retry = await asyncio.wait_for(asyncio.to_thread(send, instance, message), 20)
        finally:
            gate.open()
        assert retry is not None and retry[0] == 451 and "under way" in retry[1], retry
        done = await first
        assert done is not None and done[0] == 250, done
        assert per_rcpt([m.rcpt_tos for m in upstream.messages]) == Counter(RCPTS)
        busy = {"kind": "split", "event": "wait_timed_out"}
        assert await asyncio.to_thread(metric, instance, "ccguard_claim_events_total", busy) == 1
    finally:
        stop_instance(instance)
