"""One attempt at a time per split message, across every process on the database.

A split attempt first takes the message key's lease in the store (see
:meth:`relay.quarantine.store.QuarantineStore.acquire_lease`), renews it a
third of ``[quarantine] claim_lease`` after each successful renewal (a failed
or slow one is retried at once, see :mod:`relay.actions.renewal`) while it
delivers, records each copy under it (a fenced write: refused once the key
changed hands) and drops it at the end.  A retry that arrives meanwhile,
through this process or another, waits for the lease (at most ``claim_wait``
seconds, then ``451``, so the client retries later) and then reads the ledger
the first attempt wrote.  If the holder died its lease expires within
``claim_lease`` seconds and the next attempt takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from structlog.typing import FilteringBoundLogger

from relay.actions.renewal import keep_renewed
from relay.errors import ClaimBusyError, LeaseLostError, StoreError
from relay.quarantine.store import Lease, QuarantineStore

__all__ = ["ClaimMetrics", "SplitClaims"]

#: Seconds between two tries for a busy lease (jittered, so waiters do not march in step).
POLL = 0.1


class ClaimMetrics(Protocol):
    """Where claim events are counted (``kind``: split / release)."""

    def claim_event(self, kind: str, event: str) -> None: ...


class SplitClaims:
    """Takes, renews and drops the leases of split attempts."""

    def __init__(
        self,
        store: QuarantineStore,
        *,
        lease: float,
        wait: float,
        log: FilteringBoundLogger,
        metrics: ClaimMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.lease = lease
        self.wait = wait
        self._log = log
        self._metrics = metrics
        self._clock = clock
        # Leases this process could not drop (the store failed at that moment):
        # its next attempt of the key drops them first instead of waiting them out.
        self._undropped: dict[str, Lease] = {}
        # Held leases (by holder id): when last renewed (by ``clock``), or None once lost.
        self._renewed_at: dict[str, float | None] = {}

    def _count(self, event: str) -> None:
        if self._metrics is not None:
            self._metrics.claim_event("split", event)

    def busy(self, queue_id: str) -> ClaimBusyError:
        """The wait for the key ran out (here or in the in-process lock): counted, logged."""
        self._count("wait_timed_out")
        self._log.warning("split_claim_busy", queue_id=queue_id, waited=self.wait)
        return ClaimBusyError()

    async def acquire(self, key: str, queue_id: str, wait: float | None = None) -> Lease:
        """The lease on ``key``, waiting at most ``wait`` (default: ``self.wait``)
        seconds for its holder.

        Raises ClaimBusyError when the wait runs out, StoreError when the store fails.
        """
        stale = self._undropped.pop(key, None)
        if stale is not None:
            await self._drop(stale)
        holder = secrets.token_hex(12)
        deadline = self._clock() + (self.wait if wait is None else wait)
        while True:
            lease = await self._store.acquire_lease(key, holder, self.lease)
            if lease is not None:
                break
            if self._clock() >= deadline:
                raise self.busy(queue_id)
            await asyncio.sleep(POLL * random.uniform(0.5, 1.5))
        self._count("taken")
        if lease.taken_over:
            self._count("taken_over")
            self._log.warning("split_claim_taken_over", queue_id=queue_id, token=lease.token)
        return lease

    @contextlib.asynccontextmanager
    async def holding(self, lease: Lease, queue_id: str) -> AsyncIterator[None]:
        """Renew ``lease`` in the background for the block; drop it afterwards."""
        self._renewed_at[lease.holder] = self._clock()
        renewer = asyncio.create_task(self._renew(lease, queue_id))
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            del self._renewed_at[lease.holder]
            await self._drop(lease)

    def check(self, lease: Lease) -> None:
        """Raise LeaseLostError unless ``lease`` is provably still held: not found
        taken over, and renewed less than ``lease`` seconds ago (by this process's
        clock; the store's expiry is never earlier).  Called right before each
        copy's DATA: a holder that may have lost its key sends nothing more."""
        renewed_at = self._renewed_at.get(lease.holder)
        if renewed_at is None or self._clock() - renewed_at >= self.lease:
            raise LeaseLostError(lease.key[:40], lease.token)

    async def _drop(self, lease: Lease) -> None:
        try:
            await self._store.drop_lease(lease)
        except StoreError:  # dropped by the next attempt here, else it expires
            if len(self._undropped) >= 1000:  # a store down for long: let them expire
                self._undropped.clear()
            self._undropped[lease.key] = lease

    async def _renew(self, lease: Lease, queue_id: str) -> None:
        def failed(error: str) -> None:  # tried again at once: see relay/actions/renewal.py
            self._log.warning("split_claim_renewal_failed", queue_id=queue_id, error=error)

        def renewed(at: float) -> None:
            self._renewed_at[lease.holder] = at

        await keep_renewed(
            lambda: self._store.renew_lease(lease, self.lease), self.lease,
            on_error=failed, on_renewed=renewed, clock=self._clock,
        )  # fmt: skip
        # No further DATA (check) and its ledger writes are refused (fenced): 451.
        self._renewed_at[lease.holder] = None
        self._count("lost")
        self._log.error("split_claim_lost", queue_id=queue_id, token=lease.token)
