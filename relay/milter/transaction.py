"""What the MTA told the milter about one connection and its current message (pure).

Connection facts (client address, HELO, macros) outlive a transaction; the
envelope and the message being collected are reset at every MAIL FROM and
after an abort.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from relay.envelope import Envelope
from relay.milter.message import MessageBuilder
from relay.smtp.budget import InflightBudget, Reservation

__all__ = ["MilterTransaction", "envelope_address"]


def envelope_address(raw: bytes) -> str:
    """``<bob@example.com>`` as the MTA forwards MAIL/RCPT arguments → ``bob@example.com``;
    ``<>`` → ``""``."""
    text = raw.decode("utf-8", "surrogateescape").strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


def _options(arguments: Sequence[bytes]) -> tuple[str, ...]:
    return tuple(a.decode("utf-8", "surrogateescape") for a in arguments)


class MilterTransaction:
    """The state of one milter connection."""

    def __init__(self, max_message_size: int, budget: InflightBudget | None = None) -> None:
        self._max = max_message_size
        self._budget = budget
        self._reservation: Reservation | None = None
        self.client_ip = ""
        self.helo = ""
        self.macros: dict[str, str] = {}
        self.reset()

    def reset(self) -> None:
        """Forget the current message (abort, a new MAIL FROM, its answer sent, or the
        connection gone) and give its bytes back to ``[limits] max_inflight_bytes``."""
        if self._reservation is not None:
            self._reservation.release()
        self._reservation = self._budget.reservation() if self._budget is not None else None
        #: The message did not fit the in-flight budget: its bytes are dropped as they come.
        self.over_budget = False
        self.macros.pop("i", None)  # the queue id is the message's, not the connection's
        self.mail_from: str | None = None
        self.mail_options: tuple[str, ...] = ()
        self.rcpts: list[str] = []
        self.rcpt_options: list[tuple[str, ...]] = []
        self.builder = MessageBuilder()
        self.too_large = False

    def mail(self, sender: bytes, arguments: Sequence[bytes]) -> None:
        """MAIL FROM: a new transaction begins."""
        self.reset()
        self.mail_from = envelope_address(sender)
        self.mail_options = _options(arguments)

    def rcpt(self, recipient: bytes, arguments: Sequence[bytes]) -> None:
        """One accepted RCPT TO."""
        self.rcpts.append(envelope_address(recipient))
        self.rcpt_options.append(_options(arguments))

    def macro(self, values: Mapping[str, str]) -> None:
        """Macros the MTA sent ahead of a command (``{i}``, ``{auth_authen}``…)."""
        self.macros.update(values)

    def header(self, name: str, value: bytes) -> None:
        """One header field (ignored once the message is over the size limit)."""
        if not self._full(len(name) + len(value)):
            self.builder.header(name, value)

    def body(self, chunk: bytes) -> None:
        """One body chunk (ignored once the message is over the size limit)."""
        if chunk and not self._full(len(chunk)):
            self.builder.body(chunk)

    def _full(self, adding: int) -> bool:
        size = self.builder.size + adding
        self.too_large = self.too_large or size > self._max
        if self.too_large or self.over_budget:
            return True
        if self._reservation is not None and not self._reservation.grow_to(size):
            # As on the SMTP path: the rest is read and dropped, the bytes go back now.
            self.over_budget = True
            self._reservation.release()
            self.builder = MessageBuilder()
        return self.over_budget

    def envelope(self, queue_id: str) -> Envelope:
        """The envelope of the message now complete."""
        auth = self.macros.get("{auth_authen}") or None
        return Envelope(
            mail_from=self.mail_from or "",
            rcpt_tos=tuple(self.rcpts),
            mail_options=self.mail_options,
            client_ip=self.client_ip,
            client_helo=self.helo,
            queue_id=queue_id,
            auth_user=auth,
            rcpt_options=tuple(self.rcpt_options),
        )
