"""``/metrics`` summed over several worker processes (``[smtp] workers``).

prometheus-client's multiprocess mode: every process that calls
:func:`enable` before it creates its metrics writes their values to
memory-mapped files in one directory (one file per process and metric type),
whatever registry they belong to, so every metric of :class:`Metrics` (and any
added later) is shared without being declared twice.  :func:`render` reads them
all back: counters and histograms are summed over every process that ever ran
(a restarted worker's old counts stay in the total, so rates stay right); gauges
over the processes alive now, summed (sessions open, bytes in flight), except
the few that describe shared state and are the same in every process (build
info, policy mode, the quarantine's counts read by the process serving
``/metrics``), which take the maximum.  See docs/throughput.md.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.samples import Sample

__all__ = ["ENV", "SHARED_GAUGES", "enable", "render"]

#: The environment variable prometheus-client reads the directory from.
ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Gauges every process reports alike: the maximum, not the sum.
SHARED_GAUGES = frozenset(
    {
        "ccguard_build_info",
        "ccguard_policy_mode",
        "ccguard_quarantine_messages",
        "ccguard_quarantine_oldest_held_seconds",
    }
)


def enable(directory: str | Path) -> None:
    """Write this process's metric values to files in ``directory`` from now on.

    Call before any :class:`~relay.observability.metrics.Metrics` is created."""
    os.environ[ENV] = str(directory)
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


class _Aggregated:
    """The directory's metrics with the per-process gauges folded into one series."""

    def __init__(self, directory: str) -> None:
        self._registry = CollectorRegistry()
        MultiProcessCollector(self._registry, path=directory)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            if metric.type == "gauge":
                metric.samples = _fold(metric.name, metric.samples)
            yield metric


def _fold(name: str, samples: list[Sample]) -> list[Sample]:
    shared = name in SHARED_GAUGES
    folded: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
    for sample in samples:
        labels = dict(sample.labels)
        pid = labels.pop("pid", None)
        if pid is not None and not _alive(pid):
            continue
        key = (sample.name, tuple(sorted(labels.items())))
        if shared:
            folded[key] = max(folded.get(key, sample.value), sample.value)
        else:
            folded[key] += sample.value
    return [Sample(n, dict(labels), value) for (n, labels), value in folded.items()]


def render(directory: str) -> tuple[bytes, str]:
    """The exposition of every process's metrics in ``directory``, and its content type."""
    return generate_latest(_Aggregated(directory)), CONTENT_TYPE_PLAIN_0_0_4
