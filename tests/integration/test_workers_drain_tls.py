"""``[smtp] workers = 2`` with ``[smtp] tls_listen`` and a milter: on SIGTERM every worker
stops accepting on every port at once, then drains (real ``ccguard serve`` processes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.helpers.process import free_port
from tests.helpers.relay import settings_for
from tests.helpers.smtp_auth import tls_smtp
from tests.helpers.sockets import refused
from tests.helpers.tls import Pki
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import Gate, wait_until
from tests.helpers.workers import running_workers
from tests.integration.test_workers import send_during_shutdown


async def test_the_tls_and_milter_ports_refuse_new_clients_while_the_workers_drain(
    upstream: RecordingUpstream, pki: Pki, tmp_path: Path
) -> None:
    # The worker holding a transaction on the plain port kept accepting on the
    # implicit-TLS port (and answering 421), and on the milter port, until its
    # plain listener had drained.
    gate = Gate()
    upstream.data_gate = gate.hold
    tls_port, milter_port = free_port(), free_port()
    smtp = tls_smtp(pki, None, tls_listen=f"127.0.0.1:{tls_port}")
    milter = {"listen": f"inet:127.0.0.1:{milter_port}"}
    settings = settings_for(upstream.port, smtp=smtp, milter=milter)
    async with running_workers(settings, 2, tmp_path) as relay:
        client = asyncio.create_task(asyncio.to_thread(send_during_shutdown, relay.smtp_port))
        await wait_until(lambda: gate.waiting == 1, "the message is with the upstream")
        await relay.sigterm_until_draining()
        try:
            await wait_until(lambda: client.done() or refused(tls_port), "TLS port not refused")
            assert not client.done(), "new TLS clients were refused only once the drain ended"
            assert refused(milter_port), "the milter port still accepted"
        finally:
            gate.open()
        assert await client == {}  # the transaction in flight still got its 250
