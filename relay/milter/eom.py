"""End of message in the milter front: decide, act, answer, log, count.

The queue id is the MTA's own (Postfix's ``{i}`` macro), so ccguard's log
lines and Postfix's maillog name the message alike; a random one like the
SMTP front's when the MTA sends none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from kilter.protocol import messages as m
from kilter.protocol.core import FilterMessage

from relay import codes
from relay.codes import Reply
from relay.envelope import Envelope
from relay.inspect.parsed import ParsedMessage
from relay.milter.context import MilterContext
from relay.milter.edits import ChangeEdit, Edit
from relay.milter.identity import retry_key
from relay.milter.outcome import CapturedDelivery, MilterAnswer, answer_for
from relay.milter.transaction import MilterTransaction
from relay.policy.verdict import Verdict
from relay.settings import Action
from relay.smtp.trace import new_queue_id

__all__ = ["EndOfMessage", "MilterReplies", "edit_frame", "reply_frame"]


@dataclass(frozen=True, slots=True)
class MilterReplies:
    """The frames to send: header edits first, then the ``final`` answer."""

    edits: tuple[FilterMessage, ...]
    final: FilterMessage


def reply_frame(reply: Reply) -> m.ReplyCode:
    """A 4xx/5xx reply as the MTA's set-reply (``SMFIR_REPLYCODE``)."""
    text = f"{reply.code} {reply.status} {reply.text}"
    return m.ReplyCode(text.encode("utf-8", "replace") + b"\0")


def edit_frame(edit: Edit) -> FilterMessage:
    """A header edit as its milter frame (``SMFIR_CHGHEADER`` / ``SMFIR_INSHEADER``)."""
    if isinstance(edit, ChangeEdit):
        return m.ChangeHeader(edit.index, edit.name, edit.value)
    return m.InsertHeader(edit.position, edit.name, edit.value)


def _frames(answer: MilterAnswer) -> MilterReplies:
    edits = tuple(edit_frame(e) for e in answer.edits)
    if answer.kind == "continue":
        return MilterReplies(edits, m.Continue())
    if answer.kind == "discard":
        return MilterReplies((), m.Discard())
    return MilterReplies((), reply_frame(answer.reply or codes.INTERNAL_ERROR))


class EndOfMessage:
    """The end-of-message work for the transaction in ``state``."""

    def __init__(self, ctx: MilterContext, state: MilterTransaction) -> None:
        self._ctx = ctx
        self._state = state
        self._started = time.monotonic()

    async def run(self) -> MilterReplies:
        """Decide and act; never raises (an unexpected error tempfails the message)."""
        env = self._state.envelope(self._state.macros.get("i") or new_queue_id())
        if self._state.too_large:
            answer = MilterAnswer("reject", reply=codes.MESSAGE_TOO_BIG)
            self._ctx.log.info("milter_too_large", queue_id=env.queue_id)
        elif self._state.over_budget:
            answer = MilterAnswer("tempfail", reply=codes.INSUFFICIENT_STORAGE)
            if self._ctx.budget is not None:
                self._ctx.budget.refused("data")
            self._ctx.log.warning("in-flight budget exhausted", queue_id=env.queue_id, stage="data")
        else:
            try:
                answer = await self._decide_and_act(env, self._state.builder.build())
            except Exception as exc:  # fail closed: the client's MTA retries
                # The type only: an exception text may quote an address.
                self._ctx.log.error(
                    "milter_failed", queue_id=env.queue_id, error=type(exc).__name__
                )
                answer = MilterAnswer("tempfail", reply=codes.INTERNAL_ERROR)
        if self._ctx.metrics is not None:
            self._ctx.metrics.milter_reply(answer.kind)
        return _frames(answer)

    async def _decide_and_act(self, env: Envelope, message: ParsedMessage) -> MilterAnswer:
        ctx = self._ctx
        started = time.monotonic()
        verdict = await ctx.decider.decide(env, message)
        inspect_seconds = time.monotonic() - started
        if ctx.metrics is not None:
            ctx.metrics.observe_message(verdict, message.size, inspect_seconds, front="milter")
        if verdict.action is Action.SPLIT:
            env = replace(env, retry_key=retry_key(env, message))
        captured = CapturedDelivery()
        reply = await ctx.dispatcher.act(env, message, verdict, captured, b"")
        answer = answer_for(message, verdict, reply, captured, ctx.matcher)
        if answer.reply is codes.INTERNAL_ERROR:
            ctx.log.error("milter_edits_mismatch", queue_id=env.queue_id)
        self._log(env, message, verdict, answer, reply, inspect_seconds)
        return answer

    def _log(
        self,
        env: Envelope,
        message: ParsedMessage,
        verdict: Verdict,
        answer: MilterAnswer,
        reply: Reply,
        inspect_seconds: float,
    ) -> None:
        ctx = self._ctx
        ctx.log.info(
            "transaction",
            front="milter",
            queue_id=env.queue_id,
            client_ip=env.client_ip,
            sender=ctx.redact(env.mail_from) if env.mail_from else "<>",
            recipients=len(env.rcpt_tos),
            size=message.size,
            action=str(verdict.action),
            rule=verdict.rule,
            exposure=verdict.exposure.counts(),
            milter_reply=answer.kind,
            header_edits=len(answer.edits),
            reply_code=(answer.reply or reply).code,
            reply_status=(answer.reply or reply).status,
            inspect_seconds=round(inspect_seconds, 6),
            duration_seconds=round(time.monotonic() - self._started, 6),
        )
