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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.process import free_port, run_ccguard, start_ccguard, wait_for_port
from tests.helpers.smtp_clients import OPENSSL
from tests.helpers.tls import Pki

PASSWORD = "app1-Pa55word"


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


@dataclass
class Serving:
    """A ``ccguard serve`` process (STARTTLS on ``port``, implicit TLS on ``tls_port``)
    delivering to a ``ccguard sink`` in ``folder/sink``, with its log lines."""

    port: int
    tls_port: int
    process: subprocess.Popen[bytes]
    log: LogLines


@contextmanager
def serving(folder: Path, pki: Pki, user: str) -> Iterator[Serving]:
    """ccguard with the localhost certificate and one SMTP user, started and stopped."""
    port, tls_port, sink_port = free_port(), free_port(), free_port()
    install_cert(folder, pki.localhost)
    config = str(write_config(folder, port, tls_port, sink_port))
    run_ccguard("smtp-user", "add", user, "--password-stdin", "--config", config,
                stdin=f"{PASSWORD}\n".encode())  # fmt: skip
    sink = start_ccguard("sink", "--listen", f"127.0.0.1:{sink_port}", "--dir", f"{folder}/sink")
    relay = start_ccguard("serve", "--config", config)
    try:
        wait_for_port(sink_port, sink)
        wait_for_port(port, relay)
        log = LogLines(relay)
        log.wait_for("ccguard started")
        yield Serving(port, tls_port, relay, log)
    finally:
        for proc in (relay, sink):
            proc.terminate()
            proc.wait(20)


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
    with serving(tmp_path, pki, "app1") as ccguard:
        port, tls_port, relay, log = ccguard.port, ccguard.tls_port, ccguard.process, ccguard.log
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


def test_every_transaction_line_carries_the_session_fields(tmp_path: Path, pki: Pki) -> None:
    """RSET, a delivered message and a hang-up in one encrypted, logged-in session:
    each transaction line in ccguard's own log output says who logged in (hashed,
    as the user name is an address) and which TLS, the same on all three."""
    user = "mailer@example.org"
    with serving(tmp_path, pki, user) as ccguard:
        log = ccguard.log
        client = smtplib.SMTP("127.0.0.1", ccguard.port, timeout=20)
        client.starttls(context=ssl._create_unverified_context())
        client.login(user, PASSWORD)
        client.mail(user)
        client.rcpt("bob@example.com")
        client.rset()
        reset = log.wait_for("transaction")
        client.sendmail(user, ["bob@example.com"], b"Subject: logged\r\n\r\nhello\r\n")
        sent = log.wait_for("transaction")
        client.mail(user)
        client.rcpt("bob@example.com")
        client.close()  # a hang-up: no QUIT
        gone = log.wait_for("transaction")
    assert (reset["outcome"], gone["outcome"], gone["stage"]) == (
        "no message", "client disconnected", "rcpt",
    )  # fmt: skip
    assert sent["action"] == "pass" and "outcome" not in sent
    assert sent["auth_user"] and user not in str(sent["auth_user"])
    assert sent["tls"] in ("TLSv1.2", "TLSv1.3") and sent["tls_cipher"]
    fields = ("auth_user", "tls", "tls_cipher")
    session = {name: sent[name] for name in fields}
    assert [{name: line.get(name) for name in fields} for line in (reset, gone)] == [session] * 2
