"""The milter path inspects exactly as the SMTP path does: the same Exposure and Verdict
for every message of the inspection corpus (tests/unit/test_inspect_cases.py), sent
through a real Postfix to a real ccguard milter.

The SMTP path's answer is computed as the SMTP front computes it: the client's bytes
parsed once (``parse_message``) and handed to the same decider.  Where Postfix itself
changes a message before any milter sees it (a line that is no header field ends
Postfix's header block, so what follows is body to Postfix and to everyone after it),
the milter must equal the SMTP path on the bytes Postfix passed on: those cases are
listed, with the reason, and checked that way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import smtplib
from pathlib import Path
from typing import Any

import pytest

from relay.app import Relay
from relay.envelope import Envelope
from relay.inspect.parsed import ParsedMessage, parse_message
from relay.policy.verdict import Verdict
from relay.smtp.pipeline import Decider, InspectingDecider
from tests.helpers.milter import POSTFIX_RECEIVED, milter_main_cf, wait_until
from tests.helpers.postfix import instance_dir, require_postfix, write_instance
from tests.helpers.process import free_port
from tests.helpers.relay import LogCapture, settings_for
from tests.helpers.upstream import RecordingUpstream
from tests.unit.test_inspect_cases import CASES, _message

pytestmark = pytest.mark.postfix

POLICY = {
    "mode": "monitor",  # every message is delivered: its verdict is still the rules'
    "rules": [
        {"name": "hold-mass", "min_visible_external": 3, "action": "quarantine"},
        {"name": "refuse-unparseable", "min_unparseable": 1, "action": "reject"},
        {"name": "hide-external", "min_visible_external": 2, "action": "rewrite"},
    ],
}
INTERNAL = ["example.org", "*.corp.example.net"]


class RecordingDecider:
    """The milter's own decider, keeping what it was asked and what it answered."""

    def __init__(self, inner: Decider) -> None:
        self.inner = inner
        self.seen: dict[str, tuple[Envelope, ParsedMessage, Verdict]] = {}

    async def decide(self, envelope: Envelope, message: ParsedMessage) -> Verdict:
        verdict = await self.inner.decide(envelope, message)
        case = next((f.value().strip() for f in message.fields if f.key == "message-id"), "")
        self.seen[case] = (envelope, message, verdict)
        return verdict


def corpus_message(case_id: str, lines: str) -> bytes:
    return f"Message-ID: <{case_id}@example.org>\r\n".encode() + _message(case_id, lines)


def send_all(port: int, messages: list[bytes]) -> list[int]:
    codes = []
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        for data in messages:
            client.ehlo("client.example.org")
            client.mail("sender@example.org")
            client.rcpt("p0@example.com")
            codes.append(client.data(data)[0])
            client.rset()
    return codes


def exposure_and_verdict(verdict: Verdict) -> tuple[Any, Any]:
    return verdict.exposure, dataclasses.replace(verdict, exposure=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("header_rewriting", [False, True], ids=["client-headers", "rewritten"])
async def test_milter_inspection_equals_smtp_path_over_the_corpus(
    tmp_path: Path, upstream: RecordingUpstream, header_rewriting: bool
) -> None:
    """Without Postfix's header address rewriting, every case but those Postfix itself
    changes is decided exactly as the SMTP front decides the client's bytes.  With it
    (Postfix's default for local clients: ``To: postmaster`` becomes
    ``postmaster@myhostname``), the milter sees the rewritten fields, which are what
    Postfix delivers: every case is then decided as the SMTP path decides those bytes."""
    require_postfix()
    port = free_port()
    settings = settings_for(
        upstream.port,
        smtp={"listen": ""},
        milter={"listen": f"inet:127.0.0.1:{port}"},
        organisation={"internal_domains": INTERNAL},
        policy=POLICY,
        inspect={"max_header_bytes": 1 << 20},
    )
    relay = Relay(settings, log=LogCapture().logger)
    recorder = RecordingDecider(relay.milter.ctx.decider)
    relay.milter.ctx = dataclasses.replace(relay.milter.ctx, decider=recorder)
    smtp_decider = InspectingDecider(relay.matcher, settings.inspect, settings.policy)
    messages = {case[0]: corpus_message(case[0], case[1]) for case in CASES}
    instance = write_instance(
        instance_dir(),
        smtp_port=free_port(),
        relayhost=f"[127.0.0.1]:{upstream.port}",
        # No header address rewriting by Postfix: the milter then sees the client's own
        # header fields (docs/milter.md, "What the milter sees").
        main={
            **milter_main_cf(f"inet:127.0.0.1:{port}"),
            **({} if header_rewriting else {"local_header_rewrite_clients": ""}),
        },
    )
    await relay.start()
    try:
        await asyncio.to_thread(instance.start)
        codes = await asyncio.to_thread(send_all, instance.smtp_port, list(messages.values()))
        await wait_until(lambda: len(upstream.messages) >= len(messages), "every case", instance)
    finally:
        await relay.stop()
        instance.stop()
        instance.discard(keep_log=tmp_path / "maillog")
    assert codes == [250] * len(messages)
    delivered = {_case_of(m.data): m.data for m in upstream.messages}
    differ = []
    for case_id, data in messages.items():
        env, _, verdict = recorder.seen[f"<{case_id}@example.org>"]
        smtp = smtp_decider.decide_now(env, parse_message(data))
        if exposure_and_verdict(verdict) == exposure_and_verdict(smtp):
            continue
        differ.append(case_id)
        as_passed = _without_trace(delivered[case_id])
        assert exposure_and_verdict(verdict) == exposure_and_verdict(
            smtp_decider.decide_now(env, parse_message(as_passed))
        ), case_id
    if not header_rewriting:
        assert set(differ) <= POSTFIX_ENDS_HEADER, sorted(set(differ) - POSTFIX_ENDS_HEADER)
    assert len(recorder.seen) == len(CASES)


def _case_of(data: bytes) -> str:
    start = data.index(b"Message-ID: <") + len(b"Message-ID: <")
    return data[start : data.index(b"@example.org>", start)].decode()


def _without_trace(data: bytes) -> bytes:
    """The delivered bytes without Postfix's Received header (ccguard's X-CCGuard tags are
    stripped by the SMTP path's inspection like any forged ones: they change nothing)."""
    match = POSTFIX_RECEIVED.search(data)
    assert match
    return data[: match.start()] + data[match.end() :]


#: Cases whose header block Postfix itself changes before any milter sees it (and
#: delivers changed): a line that is no header field (junk, a NUL in a field name, text
#: after a bare LF) ends Postfix's header block, so the rest is body; a bare CR inside a
#: line becomes part of that line.  The SMTP front instead cuts at every bare CR/LF.
POSTFIX_ENDS_HEADER = {
    "bare-cr-after-undisclosed",
    "bare-cr-internal-junk",
    "bare-cr-splits-to",
    "bare-cr-then-field",
    "bare-lf-splits-cc",
    "junk-after-subject",
    "junk-with-continuation",
    "junk-without-address",
    "lf-bare-cr",
    "nul-in-field-name",
    "space-before-name-after-junk",
}
