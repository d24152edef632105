"""``ccguard`` as a process: config errors, graceful shutdown, swaks through to the sink."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import signal
import smtplib
import socket
import subprocess
from pathlib import Path

from tests.helpers.mounts import read_only_tmpfs
from tests.helpers.process import free_port, run_ccguard, start_ccguard, wait_for_port
from tests.helpers.upstream import RecordingUpstream
from tests.helpers.waiting import Gate, wait_until

BAD = """
[smtp]
listen = "localhost"
max_recipients = 0
colour = "blue"

[upstream]
starttls = "sometimes"

[[policy.rules]]
name = "big"
action = "shred"
"""
EXPECTED_LINES = [
    "  smtp.listen: expected HOST:PORT, e.g. 127.0.0.1:10025 or [::1]:10025",
    "  smtp.max_recipients: Input should be greater than 0",
    "  smtp.colour: unknown key",
    "  upstream.starttls: Input should be 'off', 'opportunistic' or 'required'",
    "  policy.rules[0].action: Input should be 'pass', 'tag', 'rewrite', 'split', 'reject' or"
    " 'quarantine'",
]


def test_config_check_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(BAD)
    result = run_ccguard("config", "check", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["ccguard: invalid configuration:", *EXPECTED_LINES]


def test_serve_refuses_bad_config_with_same_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(BAD)
    result = run_ccguard("serve", env={"CCGUARD_CONFIG": str(config)})
    assert result.returncode == 2
    assert result.stderr.splitlines()[1:] == EXPECTED_LINES
    assert "Traceback" not in result.stderr + result.stdout


def test_environment_overrides_file(tmp_path: Path) -> None:
    config = tmp_path / "ok.toml"
    config.write_text('[upstream]\nhost = "127.0.0.1"\nport = 2525\n')
    ok = run_ccguard("config", "check", "--config", str(config))
    assert ok.returncode == 0, ok.stderr
    bad = run_ccguard(
        "--config", str(config), "config", "check", env={"CCGUARD_UPSTREAM__PORT": "70000"}
    )
    assert bad.returncode == 2
    assert "upstream.port: Input should be less than or equal to 65535" in bad.stderr


def test_missing_and_unparsable_config_files(tmp_path: Path) -> None:
    missing = run_ccguard("config", "check", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2 and "nope.toml: file not found" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[smtp\nlisten=")
    result = run_ccguard("config", "check", "--config", str(broken))
    assert result.returncode == 2 and "broken.toml: not valid TOML" in result.stderr


def write_config(tmp_path: Path, listen_port: int, upstream_port: int, **extra: str) -> Path:
    config = tmp_path / "ccguard.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{listen_port}"\nhostname = "ccguard.test"\n'
        f"shutdown_grace = 20\n"
        f'[upstream]\nhost = "127.0.0.1"\nport = {upstream_port}\nstarttls = "off"\n'
        f'[quarantine]\ndatabase = "{tmp_path}/ccguard.db"\n'
        f"[admin]\nenabled = false\n"
        f'[logging]\nhash_key = "test-key"\n' + "".join(extra.values())
    )
    return config


def send(port: int) -> dict[str, object]:
    """Send one message; during shutdown the QUIT that follows may get 421, which is fine."""
    client = smtplib.SMTP("127.0.0.1", port, timeout=30)
    try:
        return client.sendmail(
            "alice@example.org",
            ["bob@example.com"],
            b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: last one\r\n\r\nhi\r\n",
        )
    finally:
        client.close()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return True
    except OSError:
        return False


async def test_sigterm_lets_transaction_in_flight_finish(
    tmp_path: Path, upstream: RecordingUpstream
) -> None:
    gate = Gate()  # the upstream answers DATA only once ccguard is shutting down
    upstream.data_gate = gate.hold
    port = free_port()
    proc = start_ccguard("serve", "--config", str(write_config(tmp_path, port, upstream.port)))
    try:
        await asyncio.to_thread(wait_for_port, port, proc)
        client = asyncio.create_task(asyncio.to_thread(send, port))
        await wait_until(lambda: gate.waiting == 1, "the message is with the upstream")
        proc.send_signal(signal.SIGTERM)
        await wait_until(lambda: not _accepts(port), "ccguard stopped accepting")
        gate.open()
        assert await client == {}
        code = await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
    assert code == 0, err
    assert len(upstream.messages) == 1
    assert b"Subject: last one" in upstream.messages[0].data
    assert b"ccguard stopped" in out
    # Nothing about the people involved is in the log in clear.
    assert b"example.com" not in out + err and b"alice@" not in out + err


def test_swaks_through_ccguard_lands_in_sink(tmp_path: Path) -> None:
    swaks = shutil.which("swaks")
    assert swaks, (
        "swaks is not installed (Debian package swaks): run scripts/install-system-deps.sh"
    )
    sink_port, relay_port = free_port(), free_port()
    sink_dir = tmp_path / "sink"
    sink = start_ccguard("sink", "--listen", f"127.0.0.1:{sink_port}", "--dir", str(sink_dir))
    relay = start_ccguard("serve", "--config", str(write_config(tmp_path, relay_port, sink_port)))
    try:
        wait_for_port(sink_port, sink)
        wait_for_port(relay_port, relay)
        result = subprocess.run(
            [
                swaks,
                "--server",
                f"127.0.0.1:{relay_port}",
                "--from",
                "alice@example.org",
                "--to",
                "someone@example.com",
                "--header",
                "Subject: swaks test",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        emls = sorted(sink_dir.glob("*.eml"))
        assert len(emls) == 1
        data = emls[0].read_bytes()
        assert b"Subject: swaks test" in data and b"by ccguard.test (ccguard)" in data
        assert '"rcpt_tos": ["someone@example.com"]' in emls[0].with_suffix(".json").read_text()
    finally:
        for proc in (relay, sink):
            proc.terminate()
            proc.wait(20)


def test_health_command_follows_the_running_relay(tmp_path: Path) -> None:
    port = free_port()
    http = free_port()
    config = write_config(tmp_path, port, free_port())
    text = config.read_text().replace(
        "[admin]\nenabled = false\n",
        f'[admin]\nlisten = "127.0.0.1:{http}"\nusers_file = "{tmp_path}/users.json"\n',
    )
    config.write_text(text)
    down = run_ccguard("health", "--config", str(config), "--timeout", "2")
    relay = start_ccguard("serve", "--config", str(config))
    try:
        wait_for_port(http, relay)
        up = run_ccguard("health", "--config", str(config))
    finally:
        relay.terminate()
        relay.wait(20)
    assert down.returncode == 1 and down.stdout.startswith("ccguard is not healthy:")
    assert up.returncode == 0, up.stdout + up.stderr
    assert up.stdout.strip() == f"http://127.0.0.1:{http}/healthz answered 200"


def test_health_checks_the_smtp_greeting_when_no_http_listener(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, free_port())  # admin disabled, no metrics listen
    relay = start_ccguard("serve", "--config", str(config))
    try:
        wait_for_port(port, relay)
        up = run_ccguard("health", "--config", str(config))
    finally:
        relay.terminate()
        relay.wait(20)
    assert up.returncode == 0, up.stdout + up.stderr
    assert up.stdout.strip() == f"SMTP 127.0.0.1:{port} greeted with 220"


def test_environment_mistakes_are_config_errors_not_tracebacks() -> None:
    not_json = run_ccguard("config", "check", env={"CCGUARD_SMTP__ALLOWED_NETWORKS": "10.0.0.0/8"})
    typo = run_ccguard("config", "check", env={"CCGUARD_UPSTREAMS__HOST": "mail.example.org"})
    assert not_json.returncode == 2 and "Traceback" not in not_json.stderr
    assert "environment CCGUARD_SMTP__*:" in not_json.stderr
    assert "lists and tables must be JSON" in not_json.stderr
    assert typo.returncode == 2
    assert typo.stderr.splitlines()[1] == "  environment CCGUARD_UPSTREAMS__HOST: no such section"


def test_serve_on_a_read_only_filesystem_says_it_is_not_writable(tmp_path: Path) -> None:
    with read_only_tmpfs(tmp_path / "ro") as ro:
        config = tmp_path / "ro.toml"
        config.write_text(
            f'[smtp]\nlisten = "127.0.0.1:{free_port()}"\n'
            f'[quarantine]\ndatabase = "{ro}/q.db"\n[admin]\nenabled = false\n'
        )
        result = run_ccguard("serve", "--config", str(config))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "ccguard: cannot start:",
        f"  quarantine.database: quarantine store {ro}/q.db: open failed: "
        f"directory {ro} is not writable: Read-only file system",
    ]
    assert "cannot create" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def test_the_start_line_names_the_event_loop_in_use(tmp_path: Path) -> None:
    """``[smtp] event_loop = "auto"`` takes uvloop when it is installed (``ccguard[fast]``);
    the start line says which loop runs, and a demand for a missing uvloop is refused."""
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    port = free_port()
    config = write_config(tmp_path, port, free_port())
    relay = start_ccguard("serve", "--config", str(config))
    try:
        wait_for_port(port, relay)
    finally:
        relay.terminate()
        out, _ = relay.communicate(timeout=20)
    started = [json.loads(line) for line in out.splitlines() if b'"ccguard started"' in line]
    assert [line["event_loop"] for line in started] == ["uvloop" if has_uvloop else "asyncio"]

    if has_uvloop:  # a venv with ccguard[fast]: "uvloop" would simply run
        return
    config.write_text(config.read_text().replace("[smtp]\n", '[smtp]\nevent_loop = "uvloop"\n'))
    demanded = run_ccguard("serve", "--config", str(config), timeout=30)
    assert demanded.returncode == 2
    assert demanded.stderr.splitlines() == [
        'ccguard: [smtp] event_loop = "uvloop" but uvloop is not installed',
        "  install it with: pip install 'ccguard[fast]'",
    ]
