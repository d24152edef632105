"""``[review] listen``: the sender page on its own listener (the admin UI not there, the
sender page not on the admin listener), and the token key file created 0600."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx

from relay.admin.app import CONTENT_SECURITY_POLICY
from tests.helpers.process import free_port
from tests.helpers.relay import running_relay
from tests.helpers.selfservice import notice_link, send_held
from tests.helpers.selfservice import review_settings as base_settings
from tests.helpers.upstream import RecordingUpstream


async def test_sender_page_on_its_own_listener(upstream: RecordingUpstream, tmp_path: Path) -> None:
    port = free_port()
    key = tmp_path / "keys" / "review.key"
    settings = base_settings(upstream.port)
    review = settings.review.model_copy(update={
        "listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}",
        "token_key_file": str(key),
    })  # fmt: skip
    settings = settings.model_copy(update={"review": review})
    assert not key.exists()
    async with running_relay(settings) as relay, httpx.AsyncClient() as http:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_text().strip()) >= 32
        await send_held(relay.smtp_port)
        link = await notice_link(upstream)
        assert link.startswith(f"http://127.0.0.1:{port}/r/")
        page = await http.get(link)
        assert page.status_code == 200 and "Send with recipients hidden" in page.text
        assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        css = await http.get(f"http://127.0.0.1:{port}/static/admin.css")
        assert css.status_code == 200
        assert (await http.get(f"http://127.0.0.1:{port}/quarantine")).status_code == 404
        admin = f"http://127.0.0.1:{relay.http_port('admin')}"
        assert (
            await http.get(admin + link.removeprefix(f"http://127.0.0.1:{port}"))
        ).status_code == 404
        cross = await http.post(link, data={"choice": "withdraw"},
                                headers={"Sec-Fetch-Site": "cross-site"})  # fmt: skip
        assert cross.status_code == 403 and "another site" in cross.text
        stored = await relay.store.list()
        assert stored.items[0].status == "held"
