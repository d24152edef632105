"""The in-flight byte budget's hooks of an SMTP session ([limits] max_inflight_bytes).

A transaction reserves its announced ``SIZE=`` at MAIL, grows the reservation
while DATA is read, and hands it to the message's task, which releases it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from relay.smtp.budget import Reservation
from relay.smtp.context import FrontContext

__all__ = ["InflightHooks", "announced_size"]


class InflightHooks:
    """Mixin of :class:`~relay.smtp.session.SessionHandler`: its budget reservation."""

    _ctx: FrontContext
    _reservation: Reservation | None
    queue_id: str

    def _reserve(self, size: int) -> bool:
        self._reservation = self._ctx.budget.reservation()
        if self._reservation.grow_to(size):
            return True
        self._ctx.budget.refused("mail")
        self._ctx.log.warning(
            "in-flight budget exhausted", queue_id=self.queue_id, stage="mail", size=size
        )
        return False

    def data_fits(self, size: int) -> bool:
        """Hold ``size`` bytes of DATA in the in-flight budget; False (holding no more) if
        they do not fit."""
        if self._reservation is None:
            # The transaction already failed (e.g. the upstream dropped at RCPT) and
            # DATA will get that failure's reply; its bytes still count while read.
            self._reservation = self._ctx.budget.reservation()
        return self._reservation.grow_to(size)

    def data_refused(self) -> None:
        """DATA went over the in-flight budget: the rest is discarded, so give it all back."""
        if self._reservation is not None:
            self._reservation.release()
            self._reservation = None
        self._ctx.budget.refused("data")
        self._ctx.log.warning("in-flight budget exhausted", queue_id=self.queue_id, stage="data")

    def _hand_over_reservation(self, task: asyncio.Future[Any]) -> None:
        # The message's bytes live as long as its task, which outlives a client
        # that hangs up: the reservation goes with the task.
        reservation, self._reservation = self._reservation, None
        if reservation is not None:
            task.add_done_callback(lambda _: reservation.release())


def announced_size(options: list[str]) -> int:
    """The ``SIZE=`` a client announced at MAIL (aiosmtpd checked it is digits), else 0."""
    for option in options:
        keyword, _, value = option.partition("=")
        if keyword.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0
