"""Multiprocess metrics (``[smtp] workers > 1``): the files the workers write add up right.

Each worker process is a real interpreter here (``python -c``), as under the
supervisor; the test process only reads the directory, as worker 0's
``/metrics`` does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from relay.observability import multiprocess
from relay.observability.metrics import Metrics
from tests.helpers.observability import Scrape, parse_metrics

#: What a worker does to its metrics: messages like the relay's, then a failure.
WORK = """
from relay.inspect.exposure import Exposure
from relay.policy.verdict import Verdict
from relay.settings import Action

def work(metrics, messages):
    verdict = Verdict(Action.PASS, None, "x", Exposure(visible_external=1, external_domains=1))
    for _ in range(messages):
        metrics.session_opened()
        metrics.observe_reply("mail", 250)
        metrics.observe_reply("rcpt", 250)
        metrics.set_inflight_bytes(70000)
        metrics.observe_reply("data", 354)
        metrics.observe_upstream("accepted", 0.02, None)
        metrics.observe_message(verdict, 4096, 0.0004)
        metrics.observe_reply("data", 250)
    metrics.set_inflight_bytes(123)
    metrics.observe_upstream("error", 0.3, "timeout")
    metrics.observe_reply("xclient", 199)
"""

WORKER = (
    WORK
    + """
import sys
from relay.observability import multiprocess
multiprocess.enable(sys.argv[1])
from relay.observability.metrics import Metrics
work(Metrics(version="t"), int(sys.argv[2]))
print("done", flush=True)
sys.stdin.read()  # stay alive (gauges count) until the test closes stdin
"""
)


def _worker(directory: Path, messages: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(directory), str(messages)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "done\n"
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


def _in_one_process(*messages: int) -> Scrape:
    namespace: dict[str, object] = {}
    exec(WORK, namespace)  # the same calls, on a plain in-memory Metrics
    metrics = Metrics(version="t")
    for count in messages:
        namespace["work"](metrics, count)  # type: ignore[operator]
    return parse_metrics(metrics.render()[0])


def _counts(scrape: Scrape) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Counter and histogram samples, without the gauges."""
    gauges = {name for name, kind in scrape.types.items() if kind == "gauge"}
    return {key: value for key, value in scrape.samples.items() if key[0] not in gauges}


def test_two_workers_files_sum_to_what_one_process_would_count(tmp_path: Path) -> None:
    workers = [_worker(tmp_path, 3), _worker(tmp_path, 4)]
    try:
        summed = parse_metrics(multiprocess.render(str(tmp_path))[0])
        assert _counts(summed) == _counts(_in_one_process(3, 4))
        assert summed.value("ccguard_messages_total", action="pass", rule="none", front="smtp") == 7
        assert summed.value("ccguard_smtp_replies_total", stage="other", code_class="other") == 2
        assert summed.value("ccguard_upstream_errors_total", kind="timeout") == 2
        assert summed.value("ccguard_smtp_sessions_active") == 7  # live workers' gauges add up
        assert summed.value("ccguard_inflight_bytes") == 246
    finally:
        for proc in workers:
            _stop(proc)
    after = parse_metrics(multiprocess.render(str(tmp_path))[0])
    assert _counts(after) == _counts(summed)  # dead workers' counts stay: no reset for rate()
    # their gauges do not: with no worker alive, no sample at all
    assert ("ccguard_smtp_sessions_active", frozenset()) not in after.samples
    assert ("ccguard_inflight_bytes", frozenset()) not in after.samples


FORKING = (
    WORK
    + """
import os, sys
from relay.observability import multiprocess
multiprocess.enable(sys.argv[1])
from relay.observability.metrics import Metrics
metrics = Metrics(version="t")
work(metrics, 3)
child = os.fork()
if child == 0:
    work(metrics, 2)
    os._exit(0)
assert os.waitpid(child, 0)[1] == 0
work(metrics, 1)
"""
)


def test_a_process_forked_after_its_metrics_writes_files_of_its_own(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", FORKING, str(tmp_path)], check=True, timeout=60)
    summed = parse_metrics(multiprocess.render(str(tmp_path))[0])
    # parent 3 + 1, child 2 (its values start at 0, as prometheus-client's own do)
    assert summed.value("ccguard_messages_total", action="pass", rule="none", front="smtp") == 6
    assert summed.value("ccguard_message_size_bytes_count") == 6
    assert len(list(tmp_path.glob("counter_*.db"))) == 2
