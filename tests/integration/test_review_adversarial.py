"""An attacker's and a mail engineer's look at sender self-service (review 14): the
link is a credential and must not end up in the logs; a mangled link gets the clear
refusal page (audited, throttled), never a server error; a four-eyes rule cannot be
released as sent by its undo hold or its sender's "Send now"."""

from __future__ import annotations

import httpx

from tests.helpers.observability import captured_logging, json_lines
from tests.helpers.relay import running_relay
from tests.helpers.selfservice import notice_link, review_settings, send_held
from tests.helpers.upstream import RecordingUpstream


async def test_the_link_never_appears_in_the_access_log(upstream: RecordingUpstream) -> None:
    settings = review_settings(upstream.port)
    with captured_logging(hash_key="k") as out:
        async with running_relay(settings) as relay, httpx.AsyncClient() as http:
            await send_held(relay.smtp_port)
            link = await notice_link(upstream)
            token = link.rsplit("/r/", 1)[1]
            assert (await http.get(link)).status_code == 200
            assert (await http.get(link + "x")).status_code == 403
    lines = json_lines(out.getvalue())
    access = [line for line in lines if line.get("event") == "http_request"]
    assert any(str(a.get("path", "")).startswith("/r/") for a in access), access
    # Whoever reads the logs could otherwise release, withdraw or read the recipients.
    ours = "\n".join(str(line) for line in lines if line.get("logger") != "httpx")  # the client's
    assert token.rsplit(".", 1)[1] not in ours  # the signature
    assert token.split(".")[2] not in ours  # nor the nonce


async def test_a_link_with_non_ascii_signature_gets_the_refusal_page(
    upstream: RecordingUpstream,
) -> None:
    settings = review_settings(upstream.port, max_refusals=2)
    async with running_relay(settings) as relay, httpx.AsyncClient() as http:
        mid = await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        base = settings.review.public_url + "/r/"
        parts = link.removeprefix(base).split(".")
        mangled = ".".join([*parts[:3], "%C3%A9" + parts[3][2:]])
        for _ in range(2):
            resp = await http.get(base + mangled)
            assert resp.status_code == 403 and "not valid" in resp.text, resp.text
        assert (await http.get(base + mangled)).status_code == 429  # throttled like the rest
        audit = await relay.store.list_audit(50, "-")  # a malformed link names no message
        assert [e.result for e in audit if e.action == "self_service_link"] == ["refused"] * 2
        assert (await relay.store.get(mid)).status == "held"  # type: ignore[union-attr]
