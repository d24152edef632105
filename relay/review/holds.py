"""What a held message's notice offers its sender, and the undo hold's timer.

:class:`UndoHolds` is the dispatcher's :class:`~relay.actions.dispatch.HeldHook`:
for every held message it adds the self-service link to the notice and, when
the rule has ``hold_minutes``, starts the timer.  :meth:`UndoHolds.run_once`
delivers the holds whose time has come.  Several instances may run it on one
database: each due hold is taken under a database lease (``delay:<id>``) and
released through the ordinary release claim, so exactly one instance
delivers it; a hold whose sender or reviewer acted first is no longer held
and is not due.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from relay.actions.notices import NoticeExtra
from relay.admin.releasing import ReleaseDeferred
from relay.admin.review import MODE_AS_IS, MODE_HIDDEN, EventLog, Review
from relay.envelope import Envelope
from relay.errors import (
    CalendarAttendeesVisible,
    CCGuardError,
    FourEyesError,
    QuarantineStateError,
    StoreError,
    UpstreamPermanentError,
)
from relay.quarantine.requests import DELAY_CANCELLED, DELAY_DONE, DelayTimer
from relay.quarantine.store import QuarantineStore
from relay.review.service import Counter
from relay.settings import RuleSettings
from relay.settings_review import ReviewSettings

__all__ = ["DELAY_ACTOR", "UndoHolds", "links_text"]

DELAY_ACTOR = "delay-timer"
_MODES = {"as-is": MODE_AS_IS, "hidden": MODE_HIDDEN}
#: Why a due hold can never go as its rule says (the attendees of an invitation cannot
#: be hidden, as written needs reviewers, the upstream refused it for good).
_NEVER = (CalendarAttendeesVisible, FourEyesError, UpstreamPermanentError)
_CHOICES = {
    "hidden": "send it with the recipients hidden",
    "split": "send one copy to each recipient",
    "withdraw": "withdraw it",
    "request": "ask a reviewer to let it go as written",
}


def links_text(url: str, settings: ReviewSettings, expires: float, hold: bool) -> str:
    """The notice's paragraph with the link and what the page offers."""
    offers = [_CHOICES[c] for c in settings.sender_may]
    if hold:
        offers.insert(0, "send it now as written")
    until = datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "Deal with it yourself, no administrator needed: open\n"
        f"{url}\n"
        f"(valid until {until}, for one decision). There you can "
        + (", ".join(offers[:-1]) + " or " + offers[-1] if len(offers) > 1 else "".join(offers))
        + "."
    )


def _hold_outcome(minutes: int, after: str, linked: bool) -> str:
    how = "as you wrote it" if after == "as-is" else "with the external recipients hidden"
    why = "so you can\nstop or change it (an undo hold)" if linked else "(an undo hold)"
    return (
        f"Your message is held for {minutes} minute{'s' if minutes != 1 else ''} {why}. "
        f"If nobody acts it will then be\ndelivered {how}."
    )


class UndoHolds:
    """Notice extras for held messages and the timer of undo holds."""

    def __init__(
        self,
        *,
        store: QuarantineStore,
        review: Review,
        rules: Mapping[str, RuleSettings],
        settings: ReviewSettings,
        link: Callable[[str, str], str] | None,
        log: EventLog,
        count: Counter = lambda action: None,
        clock: Callable[[], float] = time.time,
        lease_ttl: float = 30.0,
    ) -> None:
        self.store, self.review, self.rules, self.settings = store, review, rules, settings
        self._link, self.log, self.count, self._clock = link, log, count, clock
        self.lease_ttl = lease_ttl
        self.holder = f"{DELAY_ACTOR}:{secrets.token_hex(6)}"

    async def held(self, quarantine_id: str, envelope: Envelope, rule: str | None) -> NoticeExtra:
        """Start the undo hold if the rule has one; the link and text for the notice."""
        settings = self.rules.get(rule or "")
        minutes = settings.hold_minutes if settings is not None else None
        outcome = ""
        if minutes is not None and settings is not None:
            deliver_at = self._clock() + minutes * 60
            await self.store.set_delay(quarantine_id, deliver_at, settings.after_delay)
            linked = self._link is not None and bool(envelope.mail_from)
            outcome = _hold_outcome(minutes, settings.after_delay, linked)
        links = ""
        if self._link is not None and envelope.mail_from:
            url = self._link(quarantine_id, envelope.mail_from)
            expires = self._clock() + self.settings.token_ttl
            # "Send now as written" is no choice where that takes two reviewers.
            send_now = settings is not None and minutes is not None and not settings.four_eyes
            links = links_text(url, self.settings, expires, hold=send_now)
        return NoticeExtra(outcome=outcome, links=links)

    async def run_once(self) -> int:
        """Deliver every undo hold whose time has come; returns how many this instance did."""
        done = 0
        for timer in await self.store.due_delays():
            lease = await self.store.acquire_lease(
                f"delay:{timer.message_id}", self.holder, self.lease_ttl
            )
            if lease is None:
                continue  # another instance is at it
            try:
                done += await self._deliver(timer)
            finally:
                with contextlib.suppress(StoreError):
                    await self.store.drop_lease(lease)
        return done

    async def _deliver(self, timer: DelayTimer) -> int:
        mid = timer.message_id
        try:
            await self.review.release(mid, _MODES.get(timer.mode, MODE_HIDDEN), DELAY_ACTOR)
        except QuarantineStateError:
            return 0  # decided meanwhile (or another instance is releasing it)
        except _NEVER as exc:
            # Trying again cannot help: leave it held for a reviewer, stop the timer.
            await self.store.finish_delay(mid, DELAY_CANCELLED)
            self.count("failed")
            self.log.info("undo_hold_stopped", target=mid, error=type(exc).__name__)
            with contextlib.suppress(StoreError):
                await self.review.audit(
                    DELAY_ACTOR, "undo_hold", mid, "stopped", f"error={type(exc).__name__}"
                )
            return 0
        except (ReleaseDeferred, CCGuardError) as exc:
            self.count("failed")
            self.log.info("undo_hold_not_delivered", target=mid, error=type(exc).__name__)
            return 0  # tried again at the next poll; the ledger keeps it once per recipient
        await self.store.finish_delay(mid, DELAY_DONE)
        self.count("delay_delivered")
        return 1

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every ``[review] delay_poll`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.run_once()
            except StoreError as exc:
                self.log.info("undo_hold_poll_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.delay_poll)
