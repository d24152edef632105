"""``ccguard milter`` as a real process on a unix socket, called by a real Postfix:
the socket's mode, /readyz covering the milter, ``front="milter"`` metrics, and
``ccguard serve`` starting the milter beside the SMTP front."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import signal
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.milter import externals, message, milter_main_cf, submit, wait_until
from tests.helpers.observability import parse_metrics
from tests.helpers.postfix import instance_dir, require_postfix, write_instance
from tests.helpers.process import free_port, start_ccguard, wait_for_port
from tests.helpers.upstream import RecordingUpstream

pytestmark = pytest.mark.postfix


def write_config(folder: Path, *, milter: str, smtp: str, upstream: int, metrics: int) -> Path:
    config = folder / "ccguard.toml"
    config.write_text(
        f'[smtp]\nlisten = "{smtp}"\nhostname = "ccguard.test"\n'
        f'[milter]\nlisten = "{milter}"\nsocket_mode = "0666"\n'
        f'[upstream]\nhost = "127.0.0.1"\nport = {upstream}\nstarttls = "off"\n'
        f'[organisation]\ninternal_domains = ["example.org"]\n'
        f'[quarantine]\ndatabase = "{folder}/ccguard.db"\n'
        f'[admin]\nenabled = false\n[metrics]\nlisten = "127.0.0.1:{metrics}"\n'
        f'[logging]\nhash_key = "test-key"\n'
        '[[policy.rules]]\nname = "hide-external"\nmin_visible_external = 3\n'
        'action = "rewrite"\n'
    )
    return config


def http_get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def stop(proc: subprocess.Popen[bytes]) -> tuple[int, bytes]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err


async def test_ccguard_milter_on_a_unix_socket_behind_postfix(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    require_postfix()
    base = instance_dir()  # reachable by Postfix's unprivileged smtpd, unlike tmp_path
    socket_path = base / "ccguard-milter.sock"
    metrics = free_port()
    config = write_config(
        base, milter=f"unix:{socket_path}", smtp="", upstream=upstream.port, metrics=metrics
    )
    instance = write_instance(
        base / "postfix",
        smtp_port=free_port(),
        relayhost=f"[127.0.0.1]:{upstream.port}",
        main=milter_main_cf(f"unix:{socket_path}"),
    )
    proc = start_ccguard("milter", "--config", str(config))
    try:
        await asyncio.to_thread(wait_for_port, metrics, proc)
        mode = stat.S_IMODE(socket_path.stat().st_mode)
        ready_status, ready = await asyncio.to_thread(http_get, metrics, "/readyz")
        await asyncio.to_thread(instance.start)
        data = message(4, "unix-socket")
        result = await asyncio.to_thread(
            submit, instance.smtp_port, data, "alice@example.org", externals(4)
        )
        await wait_until(lambda: len(upstream.messages) >= 1, "the delivery", instance)
        _, body = await asyncio.to_thread(http_get, metrics, "/metrics")
    finally:
        instance.stop()
        code, err = stop(proc)
        instance.discard(keep_log=tmp_path / "maillog")
    gone = not socket_path.exists()
    shutil.rmtree(base, ignore_errors=True)
    assert gone  # removed on a clean stop
    assert mode == 0o666
    assert ready_status == 200, ready
    checks = json.loads(ready)["checks"]
    assert checks["milter"]["ok"] is True and "smtp" not in checks, checks
    assert result.code == 250
    assert b"X-CCGuard-Action: rewrite" in upstream.messages[0].data
    assert b"p0@example.com" not in upstream.messages[0].data.split(b"\r\n\r\n")[0]
    scrape = parse_metrics(body)
    labels = {"action": "rewrite", "rule": "hide-external"}
    assert scrape.value("ccguard_messages_total", front="milter", **labels) == 1
    assert scrape.value("ccguard_messages_total", front="smtp", **labels) == 0
    assert scrape.value("ccguard_milter_replies_total", reply="continue") == 1
    assert code == 0, err


async def test_serve_starts_the_milter_beside_smtp_and_readyz_checks_both(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    milter, smtp, metrics = free_port(), free_port(), free_port()
    config = write_config(
        tmp_path,
        milter=f"inet:127.0.0.1:{milter}",
        smtp=f"127.0.0.1:{smtp}",
        upstream=upstream.port,
        metrics=metrics,
    )
    proc = start_ccguard("serve", "--config", str(config))
    try:
        await asyncio.to_thread(wait_for_port, metrics, proc)
        await asyncio.to_thread(wait_for_port, milter, proc)
        await asyncio.to_thread(wait_for_port, smtp, proc)
        status, ready = await asyncio.to_thread(http_get, metrics, "/readyz")
    finally:
        code, err = stop(proc)
    checks = json.loads(ready)["checks"]
    assert status == 200 and checks["milter"]["ok"] and checks["smtp"]["ok"], checks
    assert f"inet:127.0.0.1:{milter}" in checks["milter"]["reason"]
    assert code == 0, err


def test_ccguard_milter_without_milter_listen_says_what_to_set(tmp_path: Path) -> None:
    config = write_config(tmp_path, milter="", smtp="127.0.0.1:0", upstream=1, metrics=0)
    proc = start_ccguard("milter", "--config", str(config))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert b"milter.listen is empty" in out


def test_ccguard_milter_runs_on_the_event_loop_the_config_asks_for(tmp_path: Path) -> None:
    """``[smtp] event_loop`` holds for ``ccguard milter`` as for ``serve``: the start line
    names the loop, and a demand for uvloop where it is not installed is refused."""
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    port = free_port()
    config = write_config(tmp_path, milter=f"inet:127.0.0.1:{port}", smtp="", upstream=1, metrics=0)
    proc = start_ccguard("milter", "--config", str(config))
    try:
        wait_for_port(port, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    started = [json.loads(line) for line in out.splitlines() if b'"ccguard started"' in line]
    assert [line["event_loop"] for line in started] == ["uvloop" if has_uvloop else "asyncio"]
    if has_uvloop:  # a venv with ccguard[fast]: "uvloop" would simply run
        return
    config.write_text(config.read_text().replace("[smtp]\n", '[smtp]\nevent_loop = "uvloop"\n'))
    refused = start_ccguard("milter", "--config", str(config))
    _, err = refused.communicate(timeout=30)
    assert refused.returncode == 2
    assert err.decode().splitlines() == [
        'ccguard: [smtp] event_loop = "uvloop" but uvloop is not installed',
        "  install it with: pip install 'ccguard[fast]'",
    ]
