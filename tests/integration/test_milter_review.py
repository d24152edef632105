"""Review of the milter front (issue 15) against a real Postfix: what a retry, a
second message on the same connection and Postfix's own header additions do."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.helpers.milter import externals, message, milter_stack, postfix_dirs
from tests.helpers.postfix import PostfixInstance
from tests.helpers.upstream import RecordingUpstream

__all__ = ["postfix_dirs"]  # the fixture, used by name

pytestmark = pytest.mark.postfix


def _bare(count: int, subject: str, missing: tuple[bytes, ...]) -> bytes:
    """``message`` without the ``missing`` fields: Postfix adds a Message-Id (with its
    queue id) and a Date (the arrival time) for a local client, as for many scripts' mail."""
    kept = [line for line in message(count, subject).split(b"\r\n") if not line.startswith(missing)]
    return b"\r\n".join(kept)


async def _next_second() -> None:
    """Wait (bounded) until the wall clock's second changes."""
    start = int(time.time())
    for _ in range(40):
        if int(time.time()) != start:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the clock did not move")


@pytest.mark.parametrize("missing", [(b"Date:", b"Message-ID:"), (b"Date:",)])
async def test_split_retry_of_a_message_postfix_completed_sends_each_copy_once(
    postfix_dirs: list[PostfixInstance], upstream: RecordingUpstream, missing: tuple[bytes, ...]
) -> None:
    """Postfix's additions differ at each retry (queue id, arrival time); the ledger must
    still know the retry, or every copy already delivered goes out again."""
    data = _bare(5, "split-bare", missing)
    upstream.refuse_rcpt["p3@example.com"] = "451 4.3.0 try later"
    async with milter_stack(postfix_dirs, upstream, deliver_to=upstream.port) as stack:
        failed = await asyncio.to_thread(stack.send, data, externals(5))
        del upstream.refuse_rcpt["p3@example.com"]
        await _next_second()  # Postfix's Date for the retry differs
        retried = await asyncio.to_thread(stack.send, data, externals(5))
    assert failed.code == 451, failed
    assert retried.code == 250, retried
    got = sorted(r for m in upstream.messages for r in m.rcpt_tos)
    assert got == externals(5), [m.data[:600] for m in upstream.messages[-2:]]
