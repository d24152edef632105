"""``ccguard report`` as a real subprocess on a seeded SQLite store: JSON figures equal
what the store holds; the HTML and the PDF open, carry the charts and hold no address."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

from relay.observability.redact import Redactor
from relay.quarantine import SqliteStore
from tests.helpers.overview import NOV_FIRST, NOV_LAST, SENDERS, Clock, expected_figures, seed
from tests.helpers.process import ROOT

ARTIFACTS = ROOT / "test-artifacts"
HASH_KEY = "report-test-key"
CONFIG = """
[quarantine]
database = "{db}"

[organisation]
internal_domains = ["example.org"]

[logging]
hash_key = "{key}"

[[policy.rules]]
name = "bulk-external"
action = "quarantine"
min_visible_external = 5
exempt_senders = ["newsletter@example.org"]
exempt_recipients = ["all-staff@example.org", "list@example.net"]

[[policy.rules]]
name = "many-domains"
action = "rewrite"
min_external_domains = 3
"""


@dataclass
class Seeded:
    config: Path
    store: SqliteStore
    tmp: Path

    async def run(self, *args: str) -> tuple[int, bytes, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "relay", "report", *args, "--config", str(self.config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode is not None
        return proc.returncode, out, err.decode()


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[Seeded]:
    db = tmp_path / "q.db"
    config = tmp_path / "ccguard.toml"
    config.write_text(CONFIG.format(db=db, key=HASH_KEY), encoding="utf-8")
    clock = Clock()
    store = SqliteStore(db, clock=clock)
    await store.open()
    try:
        await seed(store, clock)
        yield Seeded(config, store, tmp_path)
    finally:
        await store.close()


NOVEMBER = ("--from", NOV_FIRST, "--to", NOV_LAST)


async def test_json_figures_equal_what_the_store_holds(seeded: Seeded) -> None:
    code, out, err = await seeded.run(*NOVEMBER, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    want = await expected_figures(seeded.store, NOV_FIRST, NOV_LAST)
    figures = data["figures"]
    assert data["period"] == {"from": NOV_FIRST, "to": NOV_LAST, "timezone": "UTC"}
    assert figures["caught"] == want["caught"]
    assert figures["by_outcome"] == want["by_outcome"]
    assert figures["external_addresses_protected"] == want["external_addresses_protected"]
    assert figures["protected_messages"] == want["protected_messages"]
    assert figures["held_now"] == want["held_now"]
    assert data["decisions"]["count"] == want["decisions"]
    assert data["decisions"]["median_seconds"] == want["median_seconds"]
    assert data["largest_exposures"][0]["id"] == want["largest"]
    assert sum(sum(v for k, v in d.items() if k != "date") for d in data["per_day"]) == 9
    assert len(data["per_day"]) == 30
    # The policy in force, with exemptions counted and never listed.
    rule = data["policy"]["rules"][0]
    assert rule == {
        "name": "bulk-external", "action": "quarantine", "min_visible_external": 5,
        "exempt_senders_count": 1, "exempt_recipients_count": 2,
    }  # fmt: skip
    assert data["policy"]["mode"] == "enforce"
    # Senders as the logs' keyed hash, reproducible with `ccguard hash`.
    hashes = {s["sender"] for s in data["senders"]["top"]}
    assert hashes == {Redactor(HASH_KEY).address(s) for s in SENDERS}
    assert "@" not in out.decode()
    audit = await seeded.store.list_audit(1)
    assert (audit[0].action, audit[0].target, audit[0].result) == ("report", "-", "ok")
    assert audit[0].actor.startswith("cli:") and "senders=hashed" in audit[0].detail


async def test_with_senders_names_them_for_internal_use(seeded: Seeded) -> None:
    code, out, err = await seeded.run(*NOVEMBER, "--format", "json", "--with-senders")
    assert code == 0, err
    data = json.loads(out)
    assert {s["sender"] for s in data["senders"]["top"]} == set(SENDERS)
    assert data["senders"]["shown_as"] == "address"


class _Charts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.charts: list[str] = []
        self.bars = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "svg":
            self.charts.append(str(found.get("data-chart")))
        if tag == "rect" and "data-value" in found:
            self.bars += 1


async def test_html_report_opens_has_the_charts_and_no_address(seeded: Seeded) -> None:
    out_file = seeded.tmp / "report.html"
    code, _, err = await seeded.run(*NOVEMBER, "--format", "html", "--output", str(out_file))
    assert code == 0, err
    html = out_file.read_text(encoding="utf-8")
    parser = _Charts()
    parser.feed(html)
    assert parser.charts == ["stacked", "horizontal", "horizontal", "horizontal"]
    assert parser.bars > 10
    assert "@" not in html
    assert "Policy in force" in html and "bulk-external" in html
    assert "590" in html  # external addresses protected


async def test_pdf_report_renders_with_charts_and_no_address(seeded: Seeded) -> None:
    for tool in ("pdftoppm", "pdftotext"):  # poppler-utils (scripts/install-system-deps.sh)
        assert shutil.which(tool), f"{tool} missing: install poppler-utils"
    pdf = seeded.tmp / "report.pdf"
    code, _, err = await seeded.run(*NOVEMBER, "--format", "pdf", "-o", str(pdf))
    assert code == 0, err
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, check=True, timeout=60
    ).stdout.decode()
    assert "Evidence report" in text and "Messages caught per day" in text
    assert "Largest exposures prevented" in text and "Top rules" in text
    assert "590" in text and "Policy in force" in text
    assert "@" not in text
    ARTIFACTS.mkdir(exist_ok=True)
    for stale in ARTIFACTS.glob("report-pdf-*.png"):
        stale.unlink()
    prefix = ARTIFACTS / "report-pdf"
    subprocess.run(["pdftoppm", "-r", "70", "-png", str(pdf), str(prefix)], check=True, timeout=60)
    pages = sorted(ARTIFACTS.glob("report-pdf-*.png"))
    assert pages and pages[0].read_bytes().startswith(b"\x89PNG")


async def test_bad_dates_are_refused_with_a_reason(seeded: Seeded) -> None:
    code, _, err = await seeded.run("--from", "2026-13-01", "--format", "json")
    assert code == 2 and "not a date like 2026-11-01" in err
    code, _, err = await seeded.run("--from", "2026-11-30", "--to", "2026-11-01")
    assert code == 2 and "ends before it starts" in err
