"""``ccguard check`` end to end, run as ``python -m relay check`` in a subprocess."""

from __future__ import annotations

import json
import mailbox
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CONFIG = """
[organisation]
internal_domains = ["example.org"]

[[policy.rules]]
name = "reject-huge"
action = "reject"
min_visible_external = 100

[[policy.rules]]
name = "hold"
action = "quarantine"
min_visible_external = 15
"""
EXPOSURE_KEYS = {
    "visible_total",
    "visible_internal",
    "visible_external",
    "external_domains",
    "unparseable",
}


def _message(n_external: int, subject: str = "Trainee induction") -> bytes:
    to = ",\r\n ".join(f"Trainee {i} <t{i}@d{i % 7}.example.com>" for i in range(n_external))
    return (
        "From: Coordinator <coord@example.org>\r\n"
        f"To: {to or 'undisclosed-recipients:;'}\r\n"
        "Cc: team@example.org\r\n"
        f"Subject: {subject}\r\n"
        "Date: Tue, 12 May 2020 09:00:00 +0100\r\n"
        "Message-ID: <induction@example.org>\r\n\r\nWelcome.\r\n"
    ).encode()


def _run(
    tmp_path: Path, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "ccguard.toml"
    config.write_text(CONFIG)
    return subprocess.run(
        [sys.executable, "-m", "relay", "check", "--config", str(config), *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )


@pytest.fixture
def emls(tmp_path: Path) -> dict[str, Path]:
    files = {"big": 300, "mid": 20, "small": 3}
    paths = {}
    for name, count in files.items():
        paths[name] = tmp_path / f"{name}.eml"
        paths[name].write_bytes(_message(count))
    return paths


def test_files_text_output(tmp_path: Path, emls: dict[str, Path]) -> None:
    result = _run(tmp_path, str(emls["big"]), str(emls["mid"]), str(emls["small"]))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{emls['big']}: reject")
    assert "would show 300 external addresses from 7 domains" in lines[0]
    assert lines[1].startswith(f"{emls['mid']}: quarantine")
    assert lines[2].startswith(f"{emls['small']}: pass")
    assert "@" not in result.stdout


def test_json_keys_and_values(tmp_path: Path, emls: dict[str, Path]) -> None:
    result = _run(tmp_path, "--json", str(emls["mid"]), str(emls["small"]))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["action"] for r in records] == ["quarantine", "pass"]
    assert [r["rule"] for r in records] == ["hold", None]
    for record in records:
        assert {"file", "action", "rule", "reason", "exposure"} <= set(record)
        assert set(record["exposure"]) >= EXPOSURE_KEYS
    assert records[0]["exposure"]["visible_external"] == 20
    assert records[0]["exposure"]["visible_internal"] == 1  # Cc team@; From is not visible
    assert "@" not in json.dumps(records[0]["exposure"])


def test_stdin(tmp_path: Path) -> None:
    result = _run(tmp_path, "--json", "-", stdin=_message(150))
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["file"], record["action"], record["rule"]) == (
        "<stdin>",
        "reject",
        "reject-huge",
    )


def test_sender_option_reaches_sender_rules(tmp_path: Path, emls: dict[str, Path]) -> None:
    config = tmp_path / "senders.toml"
    config.write_text(
        '[[policy.rules]]\nname = "bulk"\naction = "split"\nsenders = ["*@bulk.example.org"]\n'
    )
    base = [sys.executable, "-m", "relay", "check", "--config", str(config), "--json"]
    out = subprocess.run(
        [*base, "--sender", "x@BULK.example.org", str(emls["small"])],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout)["action"] == "split"
    out = subprocess.run(
        [*base, str(emls["small"])],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout)["action"] == "pass"  # From: coord@example.org is not bulk


def test_unreadable_file_exits_2_but_reports_the_rest(
    tmp_path: Path, emls: dict[str, Path]
) -> None:
    result = _run(tmp_path, str(tmp_path / "missing.eml"), str(emls["small"]))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "missing.eml" in result.stderr
    assert "pass" in result.stdout


def test_bad_config_exits_2_with_key_path(tmp_path: Path, emls: dict[str, Path]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[policy.rules]]\nname = "x"\naction = "explode"\n')
    result = subprocess.run(
        [sys.executable, "-m", "relay", "check", "--config", str(bad), str(emls["small"])],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 2
    assert "policy.rules[0].action" in result.stderr
    assert "Traceback" not in result.stderr


def _fill(box: mailbox.Mailbox[mailbox.Message]) -> None:
    for i, count in enumerate([0, 3, 20, 40, 150]):
        box.add(_message(count, subject=f"Message {i} for x{i}@example.com"))
    box.flush()


def test_mbox_impact_report(tmp_path: Path) -> None:
    path = tmp_path / "sent.mbox"
    _fill(mailbox.mbox(str(path)))
    result = _run(tmp_path, "--mbox", str(path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "5 messages" in out
    assert "would pass: 2" in out
    assert "rule hold (quarantine): 2" in out
    assert "rule reject-huge (reject): 1" in out
    largest = out.split("Largest exposures")[1].splitlines()[1:]
    assert "150 external" in largest[0] and "Message 4 for [address]" in largest[0]
    assert "x4@example.com" not in out
    assert "t1@" not in out
    assert result.stderr == ""  # no progress bar when stderr is not a terminal


def test_maildir_json_summary(tmp_path: Path) -> None:
    path = tmp_path / "Maildir"
    _fill(mailbox.Maildir(str(path), create=True))
    result = _run(tmp_path, "--maildir", str(path), "--json")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    summary = records[-1]["summary"]
    assert summary["messages"] == 5
    assert summary["would_pass"] == 2
    assert {(r["rule"], r["messages"]) for r in summary["by_rule"]} == {
        ("hold", 2),
        ("reject-huge", 1),
    }
    assert [item["visible_external"] for item in summary["largest"]] == [150, 40, 20, 3]
    assert len(records) == 6


def test_not_a_maildir_exits_2(tmp_path: Path) -> None:
    result = _run(tmp_path, "--maildir", str(tmp_path))
    assert result.returncode == 2
    assert "not a maildir" in result.stderr


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "sent.mbox"
    _fill(mailbox.mbox(str(path)))
    config = tmp_path / "ccguard.toml"
    config.write_text(CONFIG)
    argv = [sys.executable, "-m", "relay", "check", "--config", str(config), "--mbox", str(path)]
    pid, fd = pty.fork()
    if pid == 0:  # child: stdout and stderr are the terminal
        os.chdir(REPO)
        os.execv(sys.executable, argv)
    output = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0
    text = output.decode()
    assert "[##############################] 5/5" in text
    assert "Impact report" in text


def test_mbox_messages_are_numbered_from_one(tmp_path: Path) -> None:
    path = tmp_path / "sent.mbox"
    box = mailbox.mbox(str(path))
    for count in (0, 3, 20):
        box.add(_message(count))
    box.flush()
    records = [
        json.loads(line)
        for line in _run(tmp_path, "--mbox", str(path), "--json").stdout.splitlines()
    ]
    assert [r["file"] for r in records[:-1]] == [f"{path}#1", f"{path}#2", f"{path}#3"]
    assert records[2]["action"] == "quarantine"  # the third message, 20 external
    report = _run(tmp_path, "--mbox", str(path)).stdout
    largest = report.split("Largest exposures")[1].splitlines()[1:]
    assert "#3 " in largest[0] and "#2 " in largest[1]


def test_maildir_messages_are_named_by_file(tmp_path: Path) -> None:
    path = tmp_path / "Maildir"
    box = mailbox.Maildir(str(path), create=True)
    box.add(_message(20))
    box.flush()
    (name,) = os.listdir(path / "new")
    result = _run(tmp_path, "--maildir", str(path), "--json")
    assert json.loads(result.stdout.splitlines()[0])["file"] == f"{path}#{name}"
    assert "by file name" in " ".join(_run(tmp_path, "--help").stdout.split())


def test_one_message_and_one_domain_are_singular(tmp_path: Path) -> None:
    path = tmp_path / "sent.mbox"
    box = mailbox.mbox(str(path))
    box.add(_message(1))
    box.flush()
    out = _run(tmp_path, "--mbox", str(path)).stdout
    assert f"Impact report for {path}: 1 message (policy mode: enforce)" in out
    assert re.search(r"\b1 external / +1 domain +rule -", out)
    assert "1 messages" not in out and "1 domains" not in out


def test_monitor_mode_names_the_enforced_action_only_when_it_differs(tmp_path: Path) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(
        '[organisation]\ninternal_domains = ["example.org"]\n[policy]\nmode = "monitor"\n'
        '[[policy.rules]]\nname = "hold"\naction = "quarantine"\nmin_visible_external = 15\n'
        '[[policy.rules]]\nname = "mark"\naction = "tag"\nmin_visible_external = 5\n'
    )
    held, marked = tmp_path / "held.eml", tmp_path / "marked.eml"
    held.write_bytes(_message(20))
    marked.write_bytes(_message(6))
    result = subprocess.run(
        [sys.executable, "-m", "relay", "check", "--config", str(config), str(held), str(marked)],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=True,
    )  # fmt: skip
    first, second = result.stdout.splitlines()
    assert first.startswith(f"{held}: tag (enforced: quarantine) — ")
    assert second.startswith(f"{marked}: tag — ")


def test_reader_going_away_ends_quietly(tmp_path: Path) -> None:
    """`ccguard check --mbox big --json | head -3`: no "cannot read mailbox" complaint."""
    path = tmp_path / "big.mbox"
    one = b"From coord@example.org Tue May 12 09:00:00 2020\n" + _message(3).replace(b"\r\n", b"\n")
    path.write_bytes(one * 3000)  # far more JSON than a pipe holds
    config = tmp_path / "ccguard.toml"
    config.write_text(CONFIG)
    argv = ["check", "--config", str(config), "--json", "--mbox", str(path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "relay", *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    head = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert [json.loads(line)["file"] for line in head] == [f"{path}#{n}" for n in (1, 2, 3)]
    assert err == ""


def test_lf_only_files_mboxes_and_maildirs_count_as_crlf_ones(tmp_path: Path) -> None:
    crlf = _message(20)
    lf = crlf.replace(b"\r\n", b"\n")
    (tmp_path / "crlf.eml").write_bytes(crlf)
    (tmp_path / "lf.eml").write_bytes(lf)
    (tmp_path / "cr.eml").write_bytes(crlf.replace(b"\r\n", b"\r"))
    box = mailbox.Maildir(str(tmp_path / "Maildir"), create=True)
    box.add(lf)
    box.flush()
    files = [str(tmp_path / f"{name}.eml") for name in ("crlf", "lf", "cr")]
    result = _run(tmp_path, "--json", *files, "--maildir", str(tmp_path / "Maildir"))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()][:4]
    assert [r["action"] for r in records] == ["quarantine"] * 4
    assert all(r["exposure"] == records[0]["exposure"] for r in records)
    assert records[0]["exposure"]["visible_external"] == 20


def test_lf_header_lines_end_at_a_crlf_blank_line(tmp_path: Path) -> None:
    # The body quotes a long To line: text, not a header (issue 10, item 6).
    head = b"From: coord@example.org\nTo: team@example.org\nSubject: minutes\n"
    body = b"To: " + b", ".join(b"t%d@example.com" % i for i in range(20)) + b"\r\n"
    (tmp_path / "mixed.eml").write_bytes(head + b"\r\n" + body)
    result = _run(tmp_path, "--json", str(tmp_path / "mixed.eml"))
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert (record["action"], record["exposure"]["visible_external"]) == ("pass", 0)
    assert record["exposure"]["visible_internal"] == 1
