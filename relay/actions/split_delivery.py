"""Delivering a split message exactly once per recipient, across client retries.

The ledger (in the quarantine store) holds one entry per recipient of a
message key: *delivered* or *refused for good*.  Each planned copy is its own
upstream transaction, sent only to its recipients without an entry; right
after the upstream's 250 for it is read, the entries of every recipient who
accepted it are committed (fsync'd) in one transaction, before anything else
happens.  So a client's retry, with whatever subset of the recipients, sends
each recipient at most one copy, unless ccguard dies in the few milliseconds
between that 250 and that commit (see docs/actions.md, "The remaining window").

How an attempt ends:

* a ledger write fails → stop at once, ``451 4.3.0``: at most the copy whose
  entries are missing can be sent again by the retry (better than going on
  and risking a whole run of duplicates);
* nobody has the message yet (not now, not in an earlier attempt) → the
  upstream's answer: its first transient reply (as ``451 4.4.x``), else its
  first 5xx; the client's queue retries or bounces as usual;
* otherwise permanent refusals are bounced to the sender and recorded (a
  retry skips them), and the client gets ``451 4.4.x`` if any recipient was
  deferred (its retry sends only the missing copies), else ``250``.

A recipient-level 4xx/5xx does not stop the other copies; a failure of the
connection (refused, timeout, disconnect, TLS) does, since the next copy
would most likely wait out the same fault.

Deliveries of one key are serialised across every process on the database
by a lease in the store (relay/actions/split_claims.py): a retry that arrives
while another attempt is still being finished, here or on another instance,
waits for it and then reads its ledger rows; every ledger write is fenced by
the lease.  An in-process lock in front of it spares same-process retries the
polling.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from structlog.typing import FilteringBoundLogger

from relay import codes
from relay.actions.keylocks import KeyLocks
from relay.actions.ports import Deliverer, Redact
from relay.actions.replies import split_reply
from relay.actions.split import (
    SplitCopy,
    delivered_id,
    is_delivered_id,
    plan_split,
    refused_id,
    split_key,
)
from relay.actions.split_claims import SplitClaims
from relay.actions.tag import Tags
from relay.codes import Reply
from relay.envelope import Envelope
from relay.errors import ClaimBusyError, StoreError, UpstreamError, UpstreamPermanentError
from relay.inspect.domains import DomainMatcher
from relay.inspect.parsed import ParsedMessage
from relay.quarantine.store import Lease, QuarantineStore
from relay.upstream.replies import transient_reply_for

__all__ = ["Bounce", "SplitDelivery", "StoreFailed", "copy_options"]

StoreFailed = Callable[[str, Envelope, StoreError], None]
Bounce = Callable[[Envelope, ParsedMessage, Mapping[str, Reply]], None]

# Failures of one copy or recipient; anything else is the connection's.
_PER_COPY_KINDS = frozenset({"4xx", "5xx"})


def copy_options(options: Sequence[str]) -> tuple[str, ...]:
    """MAIL FROM parameters for a copy: SIZE dropped (the copy's size differs)."""
    return tuple(opt for opt in options if not opt.upper().startswith("SIZE="))


@dataclass
class _Attempt:
    """One attempt's state: the ledger entries, and what went wrong."""

    done: set[str]
    deferred: Reply | None = None
    refused: dict[str, Reply] = field(default_factory=dict)
    halted: Reply | None = None

    def pending(self, copy: SplitCopy) -> tuple[str, ...]:
        return tuple(
            r
            for r in copy.rcpts
            if delivered_id(r) not in self.done and refused_id(r) not in self.done
        )

    def delivered_copies(self, copies: Sequence[SplitCopy]) -> int:
        return sum(1 for c in copies if any(delivered_id(r) in self.done for r in c.rcpts))

    @property
    def anyone_has_it(self) -> bool:
        return any(is_delivered_id(entry) for entry in self.done)


class SplitDelivery:
    """Delivers split messages; one instance per dispatcher (it holds the key locks)."""

    def __init__(
        self,
        *,
        upstream: Deliverer,
        store: QuarantineStore,
        matcher: DomainMatcher,
        log: FilteringBoundLogger,
        redact: Redact,
        on_store_error: StoreFailed,
        on_refused: Bounce,
        claims: SplitClaims,
    ) -> None:
        self._upstream = upstream
        self._store = store
        self._matcher = matcher
        self._log = log
        self._redact = redact
        self._on_store_error = on_store_error
        self._on_refused = on_refused
        self._locks = KeyLocks()
        self._claims = claims

    @property
    def busy(self) -> int:
        """Messages being delivered (or waiting for their key) right now."""
        return len(self._locks)

    async def run(self, env: Envelope, message: ParsedMessage, tags: Tags, trace: bytes) -> Reply:
        """Deliver the client's ``message`` to every recipient not yet in the
        ledger; return the reply to end of DATA."""
        key = env.retry_key or split_key(env, message.data)
        # claim_wait bounds the whole wait: behind an attempt in this process
        # (the lock) and then for the lease, as for a retry through another one.
        started = time.monotonic()
        try:
            async with self._locks.hold(key, timeout=self._claims.wait):
                waited = time.monotonic() - started
                return await self._claimed(env, key, message, tags, trace, waited)
        except ClaimBusyError:  # an attempt in this process is still at it: retry later
            return self._claims.busy(env.queue_id).reply

    async def _claimed(
        self, env: Envelope, key: str, message: ParsedMessage, tags: Tags, trace: bytes,
        waited: float,
    ) -> Reply:  # fmt: skip
        try:
            lease = await self._claims.acquire(
                key, env.queue_id, max(0.0, self._claims.wait - waited)
            )
        except ClaimBusyError as exc:  # another attempt is still at it: retry later
            return exc.reply
        except StoreError as exc:
            self._on_store_error("ledger_claim", env, exc)
            return codes.STORE_FAILED
        async with self._claims.holding(lease, env.queue_id):
            return await self._attempt(env, lease, message, tags, trace)

    async def _attempt(
        self, env: Envelope, lease: Lease, message: ParsedMessage, tags: Tags, trace: bytes
    ) -> Reply:
        key = lease.key
        copies = plan_split(message, env, self._matcher, tags=tags)
        try:
            attempt = _Attempt(done=await self._store.copies_done(key))
        except StoreError as exc:  # without the ledger a retry could duplicate: defer
            self._on_store_error("ledger_read", env, exc)
            return codes.STORE_FAILED
        for copy in copies:
            rcpts = attempt.pending(copy)
            if rcpts and not await self._send(env, lease, copy, rcpts, trace, attempt):
                break
        reply = await self._conclude(env, lease, message, copies, attempt)
        self._log.info(
            "message_split", queue_id=env.queue_id, copies=len(copies),
            delivered=attempt.delivered_copies(copies), refused=len(attempt.refused),
            deferred=attempt.deferred is not None, code=reply.code,
        )  # fmt: skip
        return reply

    async def _send(
        self, env: Envelope, lease: Lease, copy: SplitCopy, rcpts: tuple[str, ...], trace: bytes,
        attempt: _Attempt,
    ) -> bool:  # fmt: skip
        """One copy to ``rcpts``; False when the attempt must stop here."""
        options = copy_options(env.mail_options)

        async def record(accepted: Sequence[str]) -> None:
            # The upstream has the copy from its 250 on: until this commit
            # returns, a crash means the retry sends it again.  So it runs
            # first, before logging, metrics, pooling or QUIT.  Fenced: refused
            # (LeaseLostError, the attempt halts) if another attempt took over.
            await self._store.record_copies_fenced(lease, [delivered_id(r) for r in accepted])
            attempt.done.update(delivered_id(r) for r in accepted)

        try:
            result = await self._upstream.deliver(
                env.mail_from, rcpts, (trace, *copy.pieces), options, on_accept=record,
                before_data=lambda: self._claims.check(lease),
            )  # fmt: skip
        except StoreError as exc:
            self._halt(env, attempt, exc)
            return False
        except UpstreamError as exc:
            for rcpt in rcpts:
                self._failed(env, attempt, rcpt, exc.reply, exc)
            return exc.kind in _PER_COPY_KINDS
        for rcpt, reply in result.refused.items():
            self._failed(env, attempt, rcpt, reply, None)
        return True

    def _failed(
        self, env: Envelope, attempt: _Attempt, rcpt: str, reply: Reply, exc: UpstreamError | None
    ) -> None:
        permanent = isinstance(exc, UpstreamPermanentError) or (exc is None and reply.is_permanent)
        if permanent:
            attempt.refused[rcpt] = reply
        elif attempt.deferred is None:
            # A raised error's reply is already ccguard's 451 4.4.x; a RCPT refusal's is not.
            attempt.deferred = exc.reply if exc else transient_reply_for(reply)
        event = "split_copy_refused" if permanent else "split_copy_deferred"
        self._log.warning(
            event, queue_id=env.queue_id, rcpt=self._redact(rcpt), code=reply.code,
            kind=exc.kind if exc else "rcpt",
        )  # fmt: skip

    def _halt(self, env: Envelope, attempt: _Attempt, exc: StoreError) -> None:
        # Going on could leave a run of unrecorded copies for the retry to
        # repeat; stopping leaves at most this one.
        self._on_store_error("ledger_write", env, exc)
        attempt.halted = codes.STORE_FAILED

    async def _conclude(
        self, env: Envelope, lease: Lease, message: ParsedMessage, copies: Sequence[SplitCopy],
        attempt: _Attempt,
    ) -> Reply:  # fmt: skip
        if attempt.halted is not None:
            return attempt.halted
        if not attempt.anyone_has_it and (attempt.deferred or attempt.refused):
            # Nobody has the message: the upstream's own answer, and the
            # client's queue retries or bounces as for any message.
            return attempt.deferred or next(iter(attempt.refused.values()))
        if attempt.refused:
            self._on_refused(env, message, dict(attempt.refused))
            await self._record_refusals(env, lease, attempt)
            if attempt.halted is not None:
                return attempt.halted
        return attempt.deferred or split_reply(attempt.delivered_copies(copies))

    async def _record_refusals(self, env: Envelope, lease: Lease, attempt: _Attempt) -> None:
        try:
            await self._store.record_copies_fenced(lease, [refused_id(r) for r in attempt.refused])
        except StoreError as exc:  # the retry tries (and bounces) these again
            self._halt(env, attempt, exc)
