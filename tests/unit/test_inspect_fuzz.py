"""The atheris fuzz target of inspect_message, run for a bounded time, and a
check that inspection time stays linear on what the fuzzer found."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from relay.inspect import DomainMatcher, inspect_message

ROOT = Path(__file__).resolve().parents[2]
TARGET = ROOT / "tests" / "fuzz" / "fuzz_inspect.py"
MATCHER = DomainMatcher(["example.org"])
SEEDS = [
    b'To: "Guest 001"@example.com; "Guest 002"@example.com\r\n\r\n',
    "To: a1@example.com\uff0ca2@example.com\u3001a3\uff20example.com\r\n\r\n".encode(),
    b"To: 'ann@example.org' <ann@example.org>, [EXT] Bob <bob@example.org>\r\n\r\n",
    b"To: a1 @ example . com, a2(Sales)@example.com, x@[a3@example.com]\r\n\r\n",
    b'To: <@a4@example.com,@[a5@example.com]:x@example.org>, "a6@example.com"@x.org\r\n',
    b"Cc: =?utf-8?q?a7=40example.com?= <me@example.org>\rTo\x00: a8@example.com\r\n\r\n",
    b"To: Team: a9@example.com, (b@example.net) c@example.net;, d@example.net\r\n\r\n",
]
HOSTILE = ["(", '\\"', "[\\", "a@", "@[", '"@', "a @ ", "a(b)@", ")@(", "\uff20", "=?a?q?x=40y?= "]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs the fuzzer for at most ~25 s and returns the corpus it built."""
    work = tmp_path_factory.mktemp("fuzz")
    corpus = work / "corpus"
    corpus.mkdir()
    for index, seed in enumerate(SEEDS):
        (corpus / f"seed{index}").write_bytes(seed)
    args = [
        sys.executable, str(TARGET), str(corpus),
        "-max_total_time=25", "-runs=400000", "-max_len=4096", "-timeout=10",
        f"-artifact_prefix={work}/", "-print_final_stats=1",
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Done " in done.stderr
    assert not [p.name for p in work.iterdir() if p.name.startswith(("crash-", "timeout-"))]
    return corpus


def test_fuzzing_inspect_message_finds_no_exception_or_hang(corpus: Path) -> None:
    assert len(list(corpus.iterdir())) > len(SEEDS)  # the fuzzer explored


def _best_ms(data: bytes, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):  # CPU time: other processes on the machine do not count
        start = time.process_time()
        inspect_message(data, MATCHER, max_header_bytes=1 << 23)
        best = min(best, time.process_time() - start)
    return best * 1000


def _header(unit: bytes, size: int) -> bytes:
    unit = unit.replace(b"\r", b" ").replace(b"\n", b" ") or b"x"
    return b"To: " + unit * (size // len(unit) + 1) + b"\r\n\r\n"


def test_inspection_time_is_linear_in_header_size(corpus: Path) -> None:
    """The slowest patterns (hostile units and the fuzzer's corpus, ranked at
    8 KiB) take 10x the time at 10x the size, give or take cache and garbage
    collector effects (measured: 10-17x on an idle machine, up to 41x while
    other jobs thrash the caches); quadratic would be 100x or more."""
    units = [u.encode() for u in HOSTILE] + [p.read_bytes() for p in corpus.iterdir()]
    units = [u for u in units if u.strip()]
    by_cost = sorted(units, key=lambda u: _best_ms(_header(u, 8 << 10), runs=1), reverse=True)
    ratios = {}
    for unit in by_cost[:6]:
        small, large = float("inf"), float("inf")
        for _ in range(3):  # interleaved: a busy spell of the machine hits both sizes
            small = min(small, _best_ms(_header(unit, 32 << 10), runs=1))
            large = min(large, _best_ms(_header(unit, 320 << 10), runs=1))
        ratios[unit[:40]] = large / max(small, 0.05)
    assert max(ratios.values()) < 50, ratios
