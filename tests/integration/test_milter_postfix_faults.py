"""The milter front failing closed behind a real Postfix: every failure is a 4xx the
sending client retries, and a retry delivers (or holds) exactly once.

Postfix runs with the documented settings (``milter_default_action = tempfail``).
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from tests.helpers.milter import (
    externals,
    message,
    milter_main_cf,
    milter_stack,
    postfix_dirs,
    submit,
    wait_until,
)
from tests.helpers.postfix import PostfixInstance, instance_dir, write_instance
from tests.helpers.process import free_port
from tests.helpers.upstream import RecordingUpstream

__all__ = ["postfix_dirs"]  # the fixture, used by name

pytestmark = pytest.mark.postfix

# What Postfix answers for milter_default_action = tempfail.
POSTFIX_TEMPFAIL = (451, "4.7.1 Service unavailable - try again later")


async def test_quarantine_store_failure_tempfails_and_the_retry_is_held_once(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    data = message(8, "store-down")
    async with milter_stack(postfix_dirs, upstream) as stack:
        lock = sqlite3.connect(stack.relay.settings.quarantine.database, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # the store's writes now fail (busy timeout)
        try:
            failed = await asyncio.to_thread(stack.send, data, externals(8))
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        held_before = (await stack.relay.store.list()).total
        retried = await asyncio.to_thread(stack.send, data, externals(8))
        held = await stack.relay.store.list()
        queued = await asyncio.to_thread(stack.postfix.queue_ids)
    assert (failed.code, failed.text) == (
        451,
        "4.3.0 Quarantine store unavailable, try again later",
    )
    assert held_before == 0
    assert retried.code == 250, retried
    assert held.total == 1 and queued == [] and upstream.messages == []


async def test_split_failure_tempfails_and_the_retry_sends_each_copy_once(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    """ccguard's [upstream] refuses one copy for now: the client gets a 4xx, Postfix keeps
    nothing; the client's retry sends only the missing copy (the split ledger)."""
    data = message(5, "split-retry")
    upstream.refuse_rcpt["p3@example.com"] = "451 4.3.0 try later"
    async with milter_stack(postfix_dirs, upstream, deliver_to=upstream.port) as stack:
        failed = await asyncio.to_thread(stack.send, data, externals(5))
        after_failure = sorted(r for m in upstream.messages for r in m.rcpt_tos)
        del upstream.refuse_rcpt["p3@example.com"]
        retried = await asyncio.to_thread(stack.send, data, externals(5))
        queued = await asyncio.to_thread(stack.postfix.queue_ids)
    assert failed.code == 451 and failed.text.startswith("4."), failed
    assert after_failure == sorted(set(externals(5)) - {"p3@example.com"})
    assert retried.code == 250, retried
    assert sorted(r for m in upstream.messages for r in m.rcpt_tos) == externals(5)
    assert queued == []


async def test_milter_down_postfix_tempfails_then_delivers_once_it_is_back(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    port = free_port()  # nothing listens here yet
    instance = write_instance(
        instance_dir(),
        smtp_port=free_port(),
        relayhost=f"[127.0.0.1]:{upstream.port}",
        main=milter_main_cf(f"inet:127.0.0.1:{port}"),
    )
    postfix_dirs.append(instance)
    await asyncio.to_thread(instance.start)
    data = message(1, "milter-down")
    down = await asyncio.to_thread(
        submit, instance.smtp_port, data, "alice@example.org", ["p0@example.com"]
    )
    queued_while_down = await asyncio.to_thread(instance.queue_ids)
    # The same Postfix, ccguard started on the port it is configured with.
    async with milter_stack([], upstream, milter_port=port) as stack:
        stack.postfix.stop()  # the stack's own Postfix is not needed
        back = await asyncio.to_thread(
            submit, instance.smtp_port, data, "alice@example.org", ["p0@example.com"]
        )
        await wait_until(lambda: len(upstream.messages) >= 1, "the delivery", instance)
    stack.postfix.discard()
    assert (down.code, down.text) == POSTFIX_TEMPFAIL
    assert queued_while_down == [] and len(upstream.messages) == 1
    assert back.code == 250
    assert b"Subject: milter-down" in upstream.messages[0].data


async def test_message_over_max_message_size_gets_552(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    data = message(1, "too-big", extra=b"X-Padding: " + b"x" * 3000 + b"\r\n")
    smtp = {"listen": "", "max_message_size": 2048}
    async with milter_stack(postfix_dirs, upstream, smtp=smtp) as stack:
        result = await asyncio.to_thread(stack.send, data, externals(1))
    assert (result.code, result.text) == (
        552,
        "5.3.4 Message size exceeds fixed maximum message size",
    )
    assert upstream.messages == []


async def test_progress_keeps_postfix_waiting_through_a_slow_split(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream
) -> None:
    """Each split copy takes 1.5 s upstream, five copies outlast Postfix's
    milter_content_timeout (3 s): the progress messages keep Postfix waiting."""
    upstream.data_delay = 1.5
    async with milter_stack(
        postfix_dirs,
        upstream,
        deliver_to=upstream.port,
        milter={"progress_interval": 0.5},
        postfix_main={"milter_content_timeout": "3s"},
    ) as stack:
        result = await asyncio.to_thread(stack.send, message(5, "slow-split"), externals(5))
    assert result.code == 250, result
    assert sorted(r for m in upstream.messages for r in m.rcpt_tos) == externals(5)
