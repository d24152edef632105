"""`make run`'s script, run as a newcomer does: mail reaches var/sink/, Ctrl-C ends it
with exit status 0 (make printed "Error 1" when the sink was already gone)."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import subprocess
from pathlib import Path

from tests.helpers.process import ROOT, free_port, wait_for_port


def _demo_tree(tmp_path: Path) -> Path:
    """A copy of what the script uses, so its var/ is the test's, not the checkout's."""
    for part in ("scripts/run-demo.sh", "config/demo.toml"):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / part, tmp_path / part)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    return tmp_path


def test_make_run_script_delivers_to_the_sink_and_ctrl_c_exits_zero(tmp_path: Path) -> None:
    tree = _demo_tree(tmp_path)
    smtp_port, sink_port, admin_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCGUARD_")}
    env |= {
        "CCGUARD_SMTP__LISTEN": f"127.0.0.1:{smtp_port}",
        "CCGUARD_UPSTREAM__PORT": str(sink_port),
        "CCGUARD_ADMIN__LISTEN": f"127.0.0.1:{admin_port}",
    }
    proc = subprocess.Popen(
        ["bash", str(tree / "scripts" / "run-demo.sh")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    try:
        wait_for_port(smtp_port, proc, timeout=60)
        wait_for_port(sink_port, proc, timeout=60)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
            client.sendmail(
                "alice@example.org",
                ["someone@example.com"],
                b"From: alice@example.org\r\nTo: someone@example.com\r\n"
                b"Subject: demo\r\n\r\nhi\r\n",
            )
        [eml] = list((tree / "var" / "sink").glob("*.eml"))
        assert b"Subject: demo" in eml.read_bytes()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert (tree / "var" / "admin-users.json").exists()  # the demo user, first start
