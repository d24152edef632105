"""Upstream timeouts: the connection is given up for good, and a split stops.

The upstream here is slow, not hung: with :data:`LATE` it answers the command
only once ccguard has given up waiting (sent something else, or left).  So a
connection that were RSET and pooled after the timeout would pair that late
reply with a later command, and a QUIT would be taken as "still listening".
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tests.helpers import faults
from tests.helpers.faults import MESSAGE, OK, TIMED_OUT, attempt, delivered, in_step
from tests.helpers.faulty_upstream import HANG, LATE, FaultyUpstream
from tests.helpers.relay import running_relay, settings_for

faulty = faults.faulty  # the fixture: a FaultyUpstream on a free port

SPLIT_RULE = {"rules": [{"name": "bulk", "action": "split", "min_visible_external": 2}]}
GUESTS = ("g1@example.com", "g2@example.net", "g3@example.com")
BULK = (
    b"From: alice@example.org\r\nTo: g1@example.com, g2@example.net, g3@example.com\r\n"
    b"Subject: training\r\n\r\nHello all.\r\n"
)


@pytest.mark.parametrize("stage", ["eod", "rcpt"])
async def test_after_a_timeout_the_connection_is_dropped_and_no_late_reply_is_misread(
    faulty: FaultyUpstream, stage: str
) -> None:
    faulty.faults[stage] = LATE
    settings = settings_for(faulty.port, upstream={"timeout": 1})
    async with running_relay(settings) as relay:
        failed = await asyncio.to_thread(attempt, relay.smtp_port)
        assert failed == ("data" if stage == "eod" else "rcpt", TIMED_OUT)
        await in_step(relay, faulty)
        # ccguard left without a word, so the slow upstream delivered nothing.
        assert faulty.messages == [] and faulty.commands.count("RSET") == 0
        faulty.faults.clear()
        assert await asyncio.to_thread(attempt, relay.smtp_port) == ("data", OK)  # the retry
        second = MESSAGE + b"second\r\n"
        assert await asyncio.to_thread(attempt, relay.smtp_port, second) == ("data", OK)
        await in_step(relay, faulty)
    assert delivered(faulty) == [MESSAGE, second]


def per_recipient(up: FaultyUpstream) -> Counter[str]:
    return Counter(rcpt for m in up.messages for rcpt in m.rcpt_tos)


async def send_bulk(port: int) -> tuple[str, tuple[int, str]]:
    return await asyncio.to_thread(attempt, port, BULK, GUESTS)


async def test_split_stops_when_one_copy_times_out_and_the_retry_sends_each_once(
    faulty: FaultyUpstream,
) -> None:
    faulty.faults["eod"] = HANG.on(2)  # the second copy's end of data is never answered
    settings = settings_for(faulty.port, upstream={"timeout": 1}, policy=SPLIT_RULE)
    async with running_relay(settings) as relay:
        assert await send_bulk(relay.smtp_port) == ("data", TIMED_OUT)
        # Stopped at the copy that timed out: the third was never tried.
        assert faulty.seen("eod") == 2 and sum(per_recipient(faulty).values()) == 1
        await in_step(relay, faulty)
        faulty.faults.clear()
        retry = await send_bulk(relay.smtp_port)
        await in_step(relay, faulty)
    assert retry == ("data", (250, "2.0.0 OK: delivered as 3 separate copies"))
    assert per_recipient(faulty) == Counter(GUESTS)
