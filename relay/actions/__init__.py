"""Carrying out a Verdict: message transformations, the dispatcher, notices, release.

The transformations (:func:`tag_message`, :func:`rewrite_message`,
:func:`plan_split`, :func:`build_notice`, :func:`reject_reply`) are pure:
bytes in, bytes out.  :class:`Dispatcher` (SMTP path) and
:class:`QuarantineReleaser` (admin release) do the I/O.
"""

from relay.actions.bounce import build_split_bounce
from relay.actions.dispatch import Dispatcher, Outcome
from relay.actions.notices import NOTICE_HEADER, build_notice, is_auto_submitted, should_notify
from relay.actions.notify import NoticeSender
from relay.actions.ports import ActionMetrics, Deliverer, LiveTransaction, domain_only
from relay.actions.release import HIDDEN, QuarantineReleaser, release_bytes
from relay.actions.replies import held_reply, reject_reply, split_reply
from relay.actions.rewrite import RewriteResult, rewrite_message
from relay.actions.split import SplitCopy, plan_split, split_key
from relay.actions.split_delivery import SplitDelivery
from relay.actions.tag import sanitise, tag_message, verdict_tags

__all__ = [
    "HIDDEN",
    "NOTICE_HEADER",
    "ActionMetrics",
    "Deliverer",
    "Dispatcher",
    "LiveTransaction",
    "NoticeSender",
    "Outcome",
    "QuarantineReleaser",
    "RewriteResult",
    "SplitCopy",
    "SplitDelivery",
    "build_notice",
    "build_split_bounce",
    "domain_only",
    "held_reply",
    "is_auto_submitted",
    "plan_split",
    "reject_reply",
    "release_bytes",
    "rewrite_message",
    "sanitise",
    "should_notify",
    "split_key",
    "split_reply",
    "tag_message",
    "verdict_tags",
]
