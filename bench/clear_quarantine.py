#!/usr/bin/env python3
"""Clearing 50 held messages as a reviewer does (issue 16: "a reviewer can clear
50 held messages in a minute without touching the database").

Not part of the test suite.  One real ``ccguard serve`` process per run on
127.0.0.1 (free ports, a scratch folder, a rule that holds every message with
3 or more visible external recipients), a recording aiosmtpd upstream on port 0
in this process, and an admin user added with ``ccguard admin add-user``.
Each run clears three batches of 50 held messages (sent through ccguard with
smtplib) three ways:

* ``browser``: headless Chromium (Playwright) from the login page: log in,
  search by subject, tick "all 50 matching this search", press "Release with
  recipients hidden…", confirm, wait for the summary page;
* ``api``: ``POST /api/quarantine/bulk`` with a filter;
* ``cli``: ``ccguard quarantine release --hidden --rule R``.

After each batch it asserts the upstream got each of the 50 messages exactly
once with no external address in its header block.  Every wait is bounded; the
server, the upstream and the browser are stopped at the end of each run.

Usage:
  python bench/clear_quarantine.py --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

import httpx
from playwright.async_api import Page, async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.instances import Instance, readyz
from tests.helpers.process import ROOT, free_port
from tests.helpers.upstream import RecordingUpstream
from tests.integration.test_admin_browser import CHROMIUM, CHROMIUM_ARGS

BATCH = 50
RULE = "hold-3-external"
USER, PASSWORD = "reviewer", "a long bench password 50"
EXTERNAL = tuple(f"guest{i}@{d}" for i, d in enumerate(["example.com", "example.net"] * 3))
INTERNAL = ("hr@example.org",)
WAYS = ("browser", "api", "cli")
CMD_TIMEOUT = 120.0  # seconds for any one CLI command or batch


def _write_config(folder: Path, upstream_port: int) -> Instance:
    smtp_port, admin_port = free_port(), free_port()
    config = folder / "ccguard.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\nhostname = "bench.ccguard.test"\n'
        f'[upstream]\nhost = "127.0.0.1"\nport = {upstream_port}\nstarttls = "off"\n'
        "timeout = 10\nconnect_timeout = 2\n"
        '[organisation]\ninternal_domains = ["example.org"]\n'
        f'[quarantine]\ndatabase = "{folder}/ccguard.db"\n'
        f'[admin]\nlisten = "127.0.0.1:{admin_port}"\nusers_file = "{folder}/users.json"\n'
        '[logging]\nhash_key = "bench-key"\n'
        f'[[policy.rules]]\nname = "{RULE}"\nmin_visible_external = 3\naction = "quarantine"\n',
        encoding="utf-8",
    )
    return Instance("bench", config, smtp_port, admin_port)


def _start(instance: Instance, log: Path) -> None:
    """Start ``ccguard serve`` with its output in ``log`` (a pipe nobody reads fills
    up after ~50 transactions' log lines and stalls the server) and wait for /readyz."""
    with log.open("wb") as out:
        instance.proc = subprocess.Popen(
            [sys.executable, "-m", "relay", "serve", "--config", str(instance.config)],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while readyz(instance) != 200:
        assert instance.proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "ccguard serve not ready after 30 s"
        time.sleep(0.05)


def _stop(instance: Instance) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    proc, instance.proc = instance.proc, None
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _ccguard(config: Path, *args: str, stdin: bytes = b"") -> tuple[int, str]:
    """Run ``ccguard ARGS --config config`` to completion; (exit code, stdout + stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "relay", *args, "--config", str(config),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(stdin), CMD_TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def _message(tag: str, i: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "coordinator@example.org"
    msg["To"] = ", ".join(INTERNAL)
    msg["Cc"] = ", ".join(EXTERNAL)
    msg["Subject"] = f"{tag} notice {i}"
    msg["Message-ID"] = f"<{tag}-{i}@example.org>"
    msg.set_content(f"Body of {tag} {i}.\n")
    return msg


def _send_batch(port: int, tag: str) -> None:
    """Send BATCH messages through ccguard on one SMTP connection; all must be accepted."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for i in range(BATCH):
            refused = smtp.send_message(_message(tag, i), "coordinator@example.org")
            assert not refused, refused


def _check_upstream(upstream: RecordingUpstream, tag: str, before: int) -> None:
    """Each of the batch's messages arrived exactly once, with recipients hidden."""
    copies: Counter[str] = Counter()
    for got in upstream.messages[before:]:
        head = got.data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
        assert not any(a in head for a in EXTERNAL), "an external address is visible"
        assert set(got.rcpt_tos) == {*INTERNAL, *EXTERNAL}
        for line in head.splitlines():
            if line.lower().startswith("message-id:"):
                copies[line.split(":", 1)[1].strip()] += 1
    want = {f"<{tag}-{i}@example.org>" for i in range(BATCH)}
    assert set(copies) == want and set(copies.values()) == {1}, copies
    assert len(upstream.messages) - before == BATCH


async def _wait_upstream(upstream: RecordingUpstream, count: int) -> None:
    deadline = time.monotonic() + CMD_TIMEOUT
    while len(upstream.messages) < count:
        assert time.monotonic() < deadline, f"upstream got {len(upstream.messages)}/{count}"
        await asyncio.sleep(0.05)


async def _browser(page: Page, url: str, tag: str) -> tuple[float, int, int]:
    """The reviewer's path; returns (seconds, clicks, fields typed in)."""
    start = time.perf_counter()
    await page.goto(f"{url}/quarantine")
    await page.get_by_label("User name").fill(USER)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url(f"{url}/quarantine")
    await page.get_by_label("Subject").fill(tag)
    await page.get_by_role("button", name="Search").click()
    await page.wait_for_url(f"**subject={tag}**")
    assert f"{BATCH} messages held" in await page.locator("#count").inner_text()
    await page.get_by_label(f"all {BATCH} matching this search").check()
    await page.get_by_role("button", name="Release with recipients hidden…").click()
    await page.get_by_role("button", name=f"Yes, release {BATCH} messages").click()
    await page.wait_for_url("**/quarantine/bulk/done**")
    title = f"{BATCH} of {BATCH} messages released with recipients hidden"
    await page.get_by_role("heading", name=title).wait_for()
    return time.perf_counter() - start, 5, 3


async def _api(url: str) -> float:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    body = {"action": "release", "mode": "hidden", "filter": {"rule": RULE}}
    async with httpx.AsyncClient(base_url=url, timeout=CMD_TIMEOUT) as client:
        start = time.perf_counter()
        resp = await client.post(
            "/api/quarantine/bulk", json=body, headers={"Authorization": f"Basic {token}"}
        )
        took = time.perf_counter() - start
    assert resp.status_code == 200, resp.text
    assert resp.json()["counts"] == {"released": BATCH}, resp.text
    return took


async def _cli(config: Path) -> float:
    start = time.perf_counter()
    code, out = await _ccguard(config, "quarantine", "release", "--hidden", "--rule", RULE)
    took = time.perf_counter() - start
    assert code == 0, out
    assert f"{BATCH} of {BATCH} matching held message(s) released" in out, out
    return took


async def _one_run(run: int) -> dict[str, float]:
    folder = Path(tempfile.mkdtemp(prefix="ccguard-bench50-"))
    upstream = await RecordingUpstream().start()
    instance = _write_config(folder, upstream.port)
    times: dict[str, float] = {}
    try:
        code, out = await _ccguard(
            instance.config, "admin", "add-user", USER, "--password-stdin",
            stdin=PASSWORD.encode() + b"\n",
        )  # fmt: skip
        assert code == 0, out
        await asyncio.to_thread(_start, instance, folder / "serve.log")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await (
                    await browser.new_context(viewport={"width": 1280, "height": 900})
                ).new_page()
                for way in WAYS:
                    tag = f"r{run}{way}"
                    before = len(upstream.messages)
                    await asyncio.to_thread(_send_batch, instance.smtp_port, tag)
                    assert len(upstream.messages) == before, "a message was not held"
                    if way == "browser":
                        took, clicks, fields = await _browser(page, instance.admin_url, tag)
                        times.update(clicks=clicks, fields=fields)
                    elif way == "api":
                        took = await _api(instance.admin_url)
                    else:
                        took = await _cli(instance.config)
                    await _wait_upstream(upstream, before + BATCH)
                    _check_upstream(upstream, tag, before)
                    times[way] = took
            finally:
                await browser.close()
    finally:
        _stop(instance)
        await upstream.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return times


async def main() -> None:
    """Run the bench ``--runs`` times and print one line per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, choices=range(1, 11))
    args = parser.parse_args()
    for run in range(1, args.runs + 1):
        t = await asyncio.wait_for(_one_run(run), 10 * CMD_TIMEOUT)
        print(
            f"run {run}: browser {t['browser']:.2f} s ({t['clicks']:.0f} clicks, "
            f"{t['fields']:.0f} fields typed), api {t['api']:.2f} s, cli {t['cli']:.2f} s; "
            f"upstream: each of {BATCH} exactly once, recipients hidden (x3 ways)",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
