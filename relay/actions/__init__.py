"""Carrying out a Verdict: message transformations, the dispatcher, notices, release."""

from relay.actions.rewrite import RewriteResult, rewrite_message
from relay.actions.tag import sanitise, tag_message

__all__ = ["RewriteResult", "rewrite_message", "sanitise", "tag_message"]
