"""TLS and AUTH on a real ``ccguard serve`` process: smtp-user CLI, config errors,
certificate rotation with SIGHUP."""

from __future__ import annotations

import json
import queue
import shutil
import signal
import smtplib
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from tests.helpers.process import free_port, run_ccguard, start_ccguard, wait_for_port
from tests.helpers.smtp_clients import OPENSSL
from tests.helpers.tls import Pki, make_pki

PASSWORD = "app1-Pa55word"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def write_config(folder: Path, port: int, tls_port: int, sink_port: int) -> Path:
    config = folder / "ccguard.toml"
    config.write_text(
        f"""
[smtp]
listen = "127.0.0.1:{port}"
tls_listen = "127.0.0.1:{tls_port}"
hostname = "ccguard.test"
allowed_networks = ["192.0.2.0/24"]
tls_cert = "{folder}/cert.pem"
tls_key = "{folder}/key.pem"
shutdown_grace = 5

[smtp.auth]
users_file = "{folder}/smtp-users.json"

[upstream]
host = "127.0.0.1"
port = {sink_port}
starttls = "off"

[quarantine]
database = "{folder}/q.db"

[admin]
enabled = false

[logging]
hash_key = "test"
"""
    )
    return config


def install_cert(folder: Path, pair: tuple[Path, Path]) -> None:
    shutil.copy(pair[0], folder / "cert.pem")
    shutil.copy(pair[1], folder / "key.pem")


def peer_subject(port: int, *, starttls: bool) -> str:
    """The subject of the certificate a new connection gets (``openssl s_client -brief``)."""
    argv = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-brief"]
    argv += ["-starttls", "smtp"] if starttls else []
    run = subprocess.run(argv, input="QUIT\r\n", capture_output=True, text=True, timeout=30)
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("Peer certificate:")]
    assert lines, run.stderr
    return lines[0].removeprefix("Peer certificate:").strip()


class LogLines:
    """Reads a process's stdout (JSON log lines) in a thread, so a test can wait for one."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._lines: queue.Queue[dict[str, object]] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                self._lines.put(json.loads(raw))
            except ValueError:
                continue

    def wait_for(self, event: str, timeout: float = 20) -> dict[str, object]:
        while True:
            line = self._lines.get(timeout=timeout)  # queue.Empty fails the test
            if line.get("event") == event:
                return line


def test_smtp_user_cli_add_list_remove(tmp_path: Path, pki: Pki) -> None:
    install_cert(tmp_path, pki.localhost)
    config = str(write_config(tmp_path, free_port(), free_port(), free_port()))
    added = run_ccguard("smtp-user", "add", "app1", "--password-stdin", "--config", config,
                        stdin=f"{PASSWORD}\n".encode())  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == f"added SMTP user app1 in {tmp_path}/smtp-users.json"
    stored = (tmp_path / "smtp-users.json").read_text()
    assert PASSWORD not in stored and '"app1": "scrypt$' in stored
    assert run_ccguard("smtp-user", "list", "--config", config).stdout == "app1\n"
    removed = run_ccguard("smtp-user", "remove", "app1", "--config", config)
    assert removed.returncode == 0 and removed.stdout.startswith("removed SMTP user app1")
    again = run_ccguard("smtp-user", "remove", "app1", "--config", config)
    assert again.returncode == 1 and "no SMTP user 'app1'" in again.stderr


def test_starttls_without_certificate_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[smtp]\nstarttls = "required"\n[smtp.auth]\nrequired = true\n')
    result = run_ccguard("config", "check", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines()[1:] == [
        "  smtp.auth: required and sender_patterns need users_file",
    ]
    config.write_text('[smtp]\nstarttls = "offer"\n')
    result = run_ccguard("serve", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.splitlines()[1:] == [
        '  smtp: starttls = "offer" needs tls_cert and tls_key'
    ]


def test_sighup_rotates_the_certificate_without_dropping_a_session(
    tmp_path: Path, pki: Pki
) -> None:
    port, tls_port, sink_port = free_port(), free_port(), free_port()
    install_cert(tmp_path, pki.localhost)
    config = str(write_config(tmp_path, port, tls_port, sink_port))
    run_ccguard("smtp-user", "add", "app1", "--password-stdin", "--config", config,
                stdin=f"{PASSWORD}\n".encode())  # fmt: skip
    sink = start_ccguard("sink", "--listen", f"127.0.0.1:{sink_port}", "--dir", f"{tmp_path}/sink")
    relay = start_ccguard("serve", "--config", config)
    try:
        wait_for_port(sink_port, sink)
        wait_for_port(port, relay)
        log = LogLines(relay)
        log.wait_for("ccguard started")
        assert peer_subject(port, starttls=True) == "CN = localhost"
        # A session in progress: encrypted, logged in, in the middle of a transaction.
        client = smtplib.SMTP("127.0.0.1", port, timeout=20)
        client.starttls(context=ssl._create_unverified_context())
        client.login("app1", PASSWORD)
        client.mail("noreply@example.org")
        client.rcpt("bob@example.com")

        install_cert(tmp_path, pki.other_name)
        relay.send_signal(signal.SIGHUP)
        log.wait_for("tls reloaded")
        assert peer_subject(port, starttls=True) == "CN = other"
        assert peer_subject(tls_port, starttls=False) == "CN = other"

        # A broken certificate on the next reload: logged, the last good one stays.
        (tmp_path / "cert.pem").write_text("not a certificate\n")
        relay.send_signal(signal.SIGHUP)
        failed = log.wait_for("tls reload failed")
        assert "smtp.tls_cert" in str(failed["error"])
        assert peer_subject(port, starttls=True) == "CN = other"

        code, _ = client.data(b"Subject: across the rotation\r\n\r\nstill here\r\n")
        assert code == 250
        client.quit()
        emls = list((tmp_path / "sink").glob("*.eml"))
        assert len(emls) == 1 and b"across the rotation" in emls[0].read_bytes()
    finally:
        for proc in (relay, sink):
            proc.terminate()
            proc.wait(20)
