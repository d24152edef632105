"""The fault matrix: an upstream that fails at each stage, and what the client gets.

For every fault: the client's reply (code and text) at the command where it
comes; nothing lost (a 4xx: the client's retry is delivered, exactly once; a
5xx: the client is told for good and nothing was delivered); and no upstream
connection left out of step (every connection ccguard keeps open is an idle one
in its pool, and a later message goes through).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import faults
from tests.helpers.faults import (
    MESSAGE,
    OK,
    TIMED_OUT,
    UNAVAILABLE,
    attempt,
    deferred,
    delivered,
    in_step,
)
from tests.helpers.faulty_upstream import CLOSE, HANG, RESET, Fault, FaultyUpstream, reply, slow
from tests.helpers.relay import running_relay, settings_for

faulty = faults.faulty  # the fixture: a FaultyUpstream on a free port

# id: (stage, fault, the command whose reply tells the client, that reply)
MATRIX: dict[str, tuple[str, Fault, str, tuple[int, str]]] = {
    "banner-hang": ("banner", HANG, "mail", TIMED_OUT),
    "banner-close": ("banner", CLOSE, "mail", UNAVAILABLE),
    "banner-reset": ("banner", RESET, "mail", UNAVAILABLE),
    "banner-421": ("banner", reply("421 4.3.2 busy"), "mail", deferred("421 busy")),
    # A 5xx greeting says nothing about the message: defer, as Postfix does by default.
    "banner-554": ("banner", reply("554 5.3.2 no service"), "mail", deferred("554 no service")),
    "ehlo-hang": ("ehlo", HANG, "mail", TIMED_OUT),
    "ehlo-close": ("ehlo", CLOSE, "mail", UNAVAILABLE),
    "ehlo-451": ("ehlo", reply("451 4.3.0 later"), "mail", deferred("451 later")),
    "ehlo-550": ("ehlo", reply("550 5.7.0 go away"), "mail", deferred("550 go away")),
    "mail-hang": ("mail", HANG, "mail", TIMED_OUT),
    "mail-close": ("mail", CLOSE, "mail", UNAVAILABLE),
    "mail-reset": ("mail", RESET, "mail", UNAVAILABLE),
    "mail-451": ("mail", reply("451 4.3.0 later"), "mail", deferred("451 later")),
    "mail-550": ("mail", reply("550 5.7.1 sender refused"), "mail", (550, "5.7.1 sender refused")),
    "rcpt-hang": ("rcpt", HANG, "rcpt", TIMED_OUT),
    "rcpt-close": ("rcpt", CLOSE, "rcpt", UNAVAILABLE),
    "rcpt-reset": ("rcpt", RESET, "rcpt", UNAVAILABLE),
    "rcpt-450": ("rcpt", reply("450 4.2.1 mailbox busy"), "rcpt", (450, "4.2.1 mailbox busy")),
    "rcpt-550": ("rcpt", reply("550 5.1.1 no such user"), "rcpt", (550, "5.1.1 no such user")),
    "data-hang": ("data", HANG, "data", TIMED_OUT),
    "data-close": ("data", CLOSE, "data", UNAVAILABLE),
    "data-451": ("data", reply("451 4.3.0 later"), "data", deferred("451 later")),
    "data-554": ("data", reply("554 5.5.1 no data"), "data", (554, "5.5.1 no data")),
    "mid-data-hang": ("mid_data", HANG, "data", TIMED_OUT),
    "mid-data-close": ("mid_data", CLOSE, "data", UNAVAILABLE),
    "mid-data-reset": ("mid_data", RESET, "data", UNAVAILABLE),
    "end-of-data-hang": ("eod", HANG, "data", TIMED_OUT),
    "end-of-data-close": ("eod", CLOSE, "data", UNAVAILABLE),
    "end-of-data-reset": ("eod", RESET, "data", UNAVAILABLE),
    "end-of-data-451": ("eod", reply("451 4.3.0 later"), "data", deferred("451 later")),
    "end-of-data-554": ("eod", reply("554 5.6.0 bad content"), "data", (554, "5.6.0 bad content")),
}
SLOW_STAGES = ("banner", "ehlo", "mail", "rcpt", "data", "mid_data", "eod")


def _timeouts(fault: Fault) -> dict[str, float]:
    # A hung upstream is given up on after 1 s; the others never come near the limit.
    return {"timeout": 1, "connect_timeout": 1} if fault.kind == "hang" else {}


@pytest.mark.parametrize("case", list(MATRIX))
async def test_upstream_fault_gets_the_client_a_clear_reply_and_loses_nothing(
    faulty: FaultyUpstream, case: str
) -> None:
    stage, fault, command, expected = MATRIX[case]
    faulty.faults[stage] = fault
    settings = settings_for(faulty.port, upstream=_timeouts(fault))
    async with running_relay(settings) as relay:
        got = await asyncio.to_thread(attempt, relay.smtp_port)
        assert got == (command, expected)
        assert faulty.messages == []
        await in_step(relay, faulty)
        faulty.faults.clear()
        if expected[0] < 500:  # the client's queue retries: delivered, once
            assert await asyncio.to_thread(attempt, relay.smtp_port) == ("data", OK)
            assert delivered(faulty) == [MESSAGE]
        else:  # refused for good: the client bounces it, nothing was delivered
            assert faulty.messages == []
            assert await asyncio.to_thread(attempt, relay.smtp_port, MESSAGE + b"next\r\n") == (
                "data",
                OK,
            )
        await in_step(relay, faulty)


@pytest.mark.parametrize("stage", SLOW_STAGES)
async def test_slow_upstream_within_the_timeout_delivers(
    faulty: FaultyUpstream, stage: str
) -> None:
    faulty.faults[stage] = slow(0.3)
    async with running_relay(settings_for(faulty.port, upstream={"timeout": 5})) as relay:
        assert await asyncio.to_thread(attempt, relay.smtp_port) == ("data", OK)
        await in_step(relay, faulty)
    assert delivered(faulty) == [MESSAGE]


async def test_upstream_refusing_connections_gets_451_and_the_retry_is_delivered(
    faulty: FaultyUpstream,
) -> None:
    async with running_relay(settings_for(faulty.port)) as relay:
        async with faulty.refuse():
            assert await asyncio.to_thread(attempt, relay.smtp_port) == ("mail", UNAVAILABLE)
        assert await asyncio.to_thread(attempt, relay.smtp_port) == ("data", OK)
    assert delivered(faulty) == [MESSAGE]
