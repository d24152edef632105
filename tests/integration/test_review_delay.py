"""Undo holds on a real relay with a settable clock: nobody acts → delivered once after
N minutes (by one of two instances); the sender presses "Send now" → delivered once at
once and the timer is cancelled."""

from __future__ import annotations

import asyncio
import email
import email.policy

import httpx
import pytest

from relay.quarantine import HELD, RELEASED
from relay.quarantine.requests import DELAY_CANCELLED, DELAY_DONE
from relay.settings import Settings
from tests.helpers.postgres import PgCluster
from tests.helpers.process import free_port
from tests.helpers.quarantine_store import Clock
from tests.helpers.relay import running_relay
from tests.helpers.selfservice import (
    SENDER,
    body_of,
    held_rules,
    notice_link,
    notices_to_sender,
    review_settings,
    send_held,
)
from tests.helpers.upstream import RecordingUpstream


def _settings(upstream: RecordingUpstream, after: str = "hidden") -> Settings:
    rules = held_rules(hold_minutes=2, after_delay=after)
    return review_settings(upstream.port, rules=rules, delay_poll=300)  # the test drives it


def _sent(upstream: RecordingUpstream) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(m.data, policy=email.policy.default)  # type: ignore[misc]
        for m in upstream.messages
        if m.mail_from == SENDER
    ]


async def test_nobody_acts_delivered_once_after_n_minutes(upstream: RecordingUpstream) -> None:
    clock = Clock(1_800_000_000.0)
    async with running_relay(_settings(upstream), clock=clock) as relay:
        mid = await send_held(relay.smtp_port)
        await notice_link(upstream)
        text = body_of(notices_to_sender(upstream)[0])
        assert "held for 2 minutes" in text and "send it now as written" in text
        holds = relay.self_service.holds
        assert await holds.run_once() == 0
        clock.now += 119
        assert await holds.run_once() == 0 and _sent(upstream) == []
        clock.now += 2
        assert await holds.run_once() == 1
        (copy,) = _sent(upstream)
        assert copy["Cc"] is None  # after_delay = "hidden"
        assert await holds.run_once() == 0
        clock.now += 3600
        assert await holds.run_once() == 0
        assert len(_sent(upstream)) == 1
        stored = await relay.store.get(mid)
        assert stored is not None and (stored.status, stored.released_by) == (
            RELEASED, "delay-timer",
        )  # fmt: skip
        timer = await relay.store.get_delay(mid)
        assert timer is not None and timer.status == DELAY_DONE


async def test_send_now_delivers_as_written_and_cancels_the_timer(
    upstream: RecordingUpstream,
) -> None:
    clock = Clock(1_800_000_000.0)
    async with running_relay(_settings(upstream), clock=clock) as relay:
        mid = await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        async with httpx.AsyncClient() as http:
            page = await http.get(link)
            assert "Send now as written" in page.text and "Undo hold" in page.text
            done = await http.post(link, data={"choice": "send_now"})
            assert done.status_code == 200 and "Sent now" in done.text
        (copy,) = _sent(upstream)
        assert "trainee0@example.com" in str(copy["Cc"])  # as written
        timer = await relay.store.get_delay(mid)
        assert timer is not None and timer.status == DELAY_CANCELLED
        clock.now += 600
        assert await relay.self_service.holds.run_once() == 0
        assert len(_sent(upstream)) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_two_instances_deliver_a_due_hold_once(
    upstream: RecordingUpstream, backend: str, request: pytest.FixtureRequest
) -> None:
    clock = Clock(1_800_000_000.0)
    one = _settings(upstream, after="as-is")
    if backend == "postgresql":
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        database = cluster.url(cluster.create_database())
        quarantine = {"database": database, "password_file": str(cluster.password_file)}
        one = one.model_copy(update={"quarantine": one.quarantine.model_copy(update=quarantine)})
    two = one.model_copy(
        update={
            "smtp": one.smtp.model_copy(update={"listen": "127.0.0.1:0"}),
            "admin": one.admin.model_copy(update={"listen": f"127.0.0.1:{free_port()}"}),
        }
    )
    async with (
        running_relay(one, clock=clock) as first,
        running_relay(two, clock=clock) as second,
    ):
        mids = [await send_held(first.smtp_port, f"Message {i}") for i in range(3)]
        clock.now += 121
        done = await asyncio.gather(
            first.self_service.holds.run_once(), second.self_service.holds.run_once()
        )
        assert sum(done) == 3
        assert len(_sent(upstream)) == 3
        for mid in mids:
            stored = await first.store.get(mid)
            assert stored is not None and stored.status == RELEASED
        assert await first.self_service.holds.run_once() == 0
        assert await second.self_service.holds.run_once() == 0
        assert len(_sent(upstream)) == 3
        assert HELD not in {(await first.store.get(m)).status for m in mids}  # type: ignore[union-attr]
