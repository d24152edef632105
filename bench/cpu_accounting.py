"""Where a benchmark's CPU goes, and which CPUs each side may run on.

* :func:`tree_cpu`: CPU seconds of a process and its live descendants (/proc).
* :func:`machine_busy`: CPU seconds the whole machine was busy (/proc/stat), so
  a run can tell how much it could not attribute (another job, kernel threads).
* :func:`run_counted`: run a command to completion and return its own CPU time
  (``os.wait4``), not whatever other child happened to be reaped meanwhile.
* :class:`Pinning`: ``--pin SERVERS:GENERATOR``; "auto" takes two CPUs on two
  different physical cores for the servers and leaves the rest to the load
  generator, where there are four or more CPUs.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pinning", "machine_busy", "pin_tree", "run_counted", "tree_cpu"]

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        fields = _stat_fields(entry) if entry.isdigit() else None
        if fields is not None:
            parents[int(entry)] = int(fields[1])

    def inside(pid: int) -> bool:
        while pid > 1:
            if pid == root:
                return True
            pid = parents.get(pid, 0)
        return False

    return [pid for pid in parents if inside(pid)]


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant (reaped ones are in cutime)."""
    total = 0.0
    for pid in _tree(root):
        fields = _stat_fields(pid)
        if fields is not None:
            total += sum(int(f) for f in fields[11:15]) / TICKS
    return total


def machine_busy() -> float:
    """CPU seconds all CPUs spent on anything but idle and iowait since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / TICKS


def pin_tree(root: int, cpus: set[int]) -> None:
    """Put ``root`` and its descendants on ``cpus``; children started later inherit it."""
    for pid in _tree(root):
        with contextlib.suppress(OSError):  # gone meanwhile
            os.sched_setaffinity(pid, cpus)


@dataclass(frozen=True)
class Counted:
    """A finished command: wall seconds, its own CPU seconds, exit status, stderr."""

    elapsed: float
    cpu: float
    returncode: int
    stderr: str


def run_counted(argv: list[str], timeout: float, cpus: set[int] | None) -> Counted:
    """Run ``argv`` (on ``cpus`` if given) and reap it with ``wait4`` for its rusage."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        err.seek(0)
        text = err.read().decode(errors="replace")
    return Counted(elapsed, usage.ru_utime + usage.ru_stime, proc.returncode, text)


def _physical_cores(cpus: list[int]) -> list[list[int]]:
    """``cpus`` grouped by physical core (SMT siblings together), in order."""
    groups: dict[str, list[int]] = {}
    for cpu in cpus:
        path = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        key = path.read_text().strip() if path.exists() else str(cpu)
        groups.setdefault(key, []).append(cpu)
    return list(groups.values())


@dataclass(frozen=True)
class Pinning:
    """CPUs for the servers under test and for the load generator (None: not pinned)."""

    servers: frozenset[int] | None = None
    generator: frozenset[int] | None = None

    @classmethod
    def parse(cls, spec: str) -> Pinning:
        """``"off"``, ``"auto"`` or ``"0,1:2,3"``; raise ``ValueError`` if unusable."""
        allowed = sorted(os.sched_getaffinity(0))
        if spec == "off":
            return cls()
        if spec == "auto":
            return cls._auto(allowed)
        servers_text, colon, generator_text = spec.partition(":")
        servers = frozenset(int(c) for c in servers_text.split(",") if c)
        generator = frozenset(int(c) for c in generator_text.split(",") if c)
        if not colon or not servers or not generator:
            raise ValueError(f"--pin {spec!r}: give SERVER_CPUS:GENERATOR_CPUS, e.g. 0,1:2,3")
        if servers & generator or not (servers | generator) <= set(allowed):
            raise ValueError(f"--pin {spec!r}: two disjoint lists of the CPUs {allowed}")
        return cls(servers, generator)

    @classmethod
    def _auto(cls, allowed: list[int]) -> Pinning:
        cores = _physical_cores(allowed)
        if len(cores) < 3:  # two for the servers and at least one for the generator
            return cls()
        servers = frozenset({cores[0][0], cores[1][0]})
        return cls(servers, frozenset(c for core in cores[2:] for c in core))

    def describe(self) -> str:
        """One line for the report."""
        if self.servers is None or self.generator is None:
            cpus = len(os.sched_getaffinity(0))
            return f"not pinned: the load generator shares the servers' {cpus} CPUs"
        servers = ",".join(map(str, sorted(self.servers)))
        generator = ",".join(map(str, sorted(self.generator)))
        return f"pinned: servers on CPUs {servers}, load generator on CPUs {generator}"
