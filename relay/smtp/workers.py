"""``[smtp] workers = N``: one supervisor process and N worker processes.

Each worker is a whole ``ccguard serve`` (``--worker INDEX``) accepting from
the SMTP sockets the supervisor bound and passed down, each new session going
to the worker with the fewest (:mod:`relay.smtp.shared_listen`); worker 0
alone also serves the admin UI, the API and ``/metrics`` (which sums every
worker, :mod:`relay.observability.multiprocess`) and runs the quarantine
retention.  The ``[milter] listen`` socket is bound here too, served by every
worker and, for ``unix:``, removed here on stop (:mod:`relay.milter.listen`).
The supervisor passes SIGHUP on to every worker, answers
SIGTERM/SIGINT by sending SIGTERM to every worker and waiting for each to
drain (``shutdown_grace``), and starts a worker that died again, with a log
line and ``ccguard_worker_restarts_total``.  A worker that fails before it is
ready during the first start stops the whole set (a bad port or store must not
be retried for ever); later it is retried with a growing delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relay.milter.listen import BoundPath, bind_milter
from relay.observability import multiprocess
from relay.observability.metrics import Metrics
from relay.settings import parse_listen
from relay.settings_milter import MilterListen
from relay.smtp.shared_listen import GONE, Inherited, SessionBoard, bind_listeners

__all__ = ["Supervisor", "WorkerSpec", "die_with_parent", "inherited_sockets"]

#: The session board's file in the metrics directory (not a ``*.db``: not a metric).
BOARD = "sessions.board"

#: Restart delays after a crash: doubled per quick crash, up to the maximum.
FIRST_DELAY = 0.5
MAX_DELAY = 30.0
#: A worker that ran this long before dying is restarted after FIRST_DELAY again.
STABLE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """How to start a worker: the ``ccguard serve`` arguments and the drain bound."""

    serve_args: Sequence[str]
    count: int
    grace: float
    #: ``[policy] mode``: the supervisor's own gauges must agree with the workers'.
    policy_mode: str = "enforce"
    #: ``[smtp] listen`` / ``tls_listen`` / ``backlog``: the supervisor binds them.
    listen: str = ""
    tls_listen: str | None = None
    backlog: int = 1024
    #: ``[milter] listen`` / ``socket_mode``: the supervisor binds it too (None: no milter).
    milter: MilterListen | None = None
    milter_mode: int = 0o660


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.started = 0.0
        self.delay = FIRST_DELAY


class Supervisor:
    """Starts, watches and stops the workers; :meth:`run` returns the exit code."""

    def __init__(self, spec: WorkerSpec, log: Any) -> None:
        self._spec = spec
        self._log = log
        self._workers = [_Worker(i) for i in range(spec.count)]
        self._stopping = asyncio.Event()
        self._metrics_dir = tempfile.mkdtemp(prefix="ccguard-metrics-")
        multiprocess.enable(self._metrics_dir)
        # The supervisor's own files: the restart counter (its other series are 0,
        # or the same as every worker's for the info gauges).
        self._metrics = Metrics(mode=spec.policy_mode)
        self._smtp: list[socket.socket] = []
        self._tls: list[socket.socket] = []
        self._milter: list[socket.socket] = []
        self._milter_path: BoundPath | None = None  # a unix socket we bound: removed at stop

    async def run(self) -> int:
        """Start every worker, supervise them until a stop signal; the exit code."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop_signal)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)
        try:
            if not self._bind():
                return 1
            code = await self._first_start()
            if code != 0:
                return code
            self._log.info("workers started", workers=self._spec.count, pids=self.pids)
            await asyncio.gather(*(self._watch(w) for w in self._workers))
            return 0
        finally:
            self._close_listeners()
            await self._stop_all()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _bind(self) -> bool:
        """Bind the SMTP sockets every worker accepts from; False (logged) if one is taken."""
        spec = self._spec
        SessionBoard.create(Path(self._metrics_dir) / BOARD, spec.count)
        try:
            if spec.listen:
                self._smtp = bind_listeners(*parse_listen(spec.listen), spec.backlog)
            if spec.tls_listen:
                self._tls = bind_listeners(*parse_listen(spec.tls_listen), spec.backlog)
            if spec.milter is not None:
                self._milter = bind_milter(spec.milter, spec.milter_mode)
                self._milter_path = (
                    BoundPath(Path(spec.milter.path)) if spec.milter.is_unix else None
                )
        except OSError as exc:
            self._log.error("cannot start", error=str(exc), detail="no worker started")
            return False
        return True

    def _close_listeners(self) -> None:
        """Close our copies: once the workers close theirs, new clients are refused
        (not left in the kernel's queue while the workers drain)."""
        for sock in (*self._smtp, *self._tls, *self._milter):
            sock.close()
        self._smtp, self._tls, self._milter = [], [], []
        if self._milter_path is not None:
            kept = self._milter_path.remove()
            if kept is not None:
                self._log.warning("milter socket not removed", error=kept)
            self._milter_path = None

    def _stop_signal(self) -> None:
        self._stopping.set()
        self._close_listeners()  # no worker is started again
        self._forward(signal.SIGTERM)  # at once: a worker still starting stops too

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.proc is not None]

    async def _first_start(self) -> int:
        """Start all workers at once; a non-zero exit code if one could not start."""
        results = await asyncio.gather(*(self._start(w) for w in self._workers))
        failed = next((code for code in results if code is not None), None)
        if failed is None or self._stopping.is_set():
            return 0
        self._log.error("worker failed to start", exit_code=failed, detail="stopping all workers")
        return failed or 1

    async def _start(self, worker: _Worker) -> int | None:
        """Start one worker and wait until it is ready; its exit code if it died first."""
        read_fd, write_fd = os.pipe()
        args = [*self._spec.serve_args, "--worker", str(worker.index), "--ready-fd", str(write_fd)]
        args += ["--listen-fds", _fds(self._smtp), "--tls-listen-fds", _fds(self._tls)]
        args += ["--milter-fds", _fds(self._milter)]
        inherited = tuple(s.fileno() for s in (*self._smtp, *self._tls, *self._milter))
        try:
            worker.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "relay", "serve", *args, pass_fds=(write_fd, *inherited)
            )
        finally:
            os.close(write_fd)
        worker.started = time.monotonic()
        ready = await asyncio.to_thread(_read_ready, read_fd)
        if ready:
            return None
        return await worker.proc.wait()

    async def _watch(self, worker: _Worker) -> None:
        """Wait for the worker to exit; start it again unless we are stopping."""
        while not self._stopping.is_set():
            assert worker.proc is not None
            exit_task = asyncio.ensure_future(worker.proc.wait())
            stop_task = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({exit_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
            stop_task.cancel()
            if not exit_task.done():
                exit_task.cancel()
                return
            await self._restart(worker, exit_task.result())

    def _vacate(self, index: int) -> None:
        """A dead worker's last count stays on the board: mark it as taking nothing."""
        board = SessionBoard(Path(self._metrics_dir) / BOARD, self._spec.count, index)
        board.publish(GONE)
        board.close()

    async def _restart(self, worker: _Worker, code: int) -> None:
        self._vacate(worker.index)
        ran = time.monotonic() - worker.started
        worker.delay = FIRST_DELAY if ran > STABLE_SECONDS else min(worker.delay * 2, MAX_DELAY)
        pid = worker.proc.pid if worker.proc is not None else None
        self._log.error(
            "worker died", worker=worker.index, pid=pid, exit_code=code,
            ran_seconds=round(ran, 1), restart_in_seconds=worker.delay,
        )  # fmt: skip
        self._metrics.worker_restarted()
        try:
            await asyncio.wait_for(self._stopping.wait(), worker.delay)
            return  # asked to stop meanwhile
        except TimeoutError:
            pass
        failed = await self._start(worker)
        if failed is None:
            self._log.info("worker restarted", worker=worker.index, pid=worker.proc.pid)  # type: ignore[union-attr]

    def _forward(self, sig: int) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    async def _stop_all(self) -> None:
        """SIGTERM every worker, wait for each to drain; SIGKILL what outlives the bound."""
        self._forward(signal.SIGTERM)
        bound = self._spec.grace + 15
        for worker in self._workers:
            if worker.proc is None or worker.proc.returncode is not None:
                continue
            try:
                await asyncio.wait_for(worker.proc.wait(), bound)
            except TimeoutError:
                self._log.error("worker did not stop, killing it", worker=worker.index)
                worker.proc.kill()
                await worker.proc.wait()
        self._log.info("workers stopped")


def _fds(sockets: list[socket.socket]) -> str:
    return ",".join(str(s.fileno()) for s in sockets)


def inherited_sockets(
    smtp_fds: str, tls_fds: str, directory: str, index: int, milter_fds: str = ""
) -> Inherited:
    """In a worker: the sockets named by ``--listen-fds`` / ``--tls-listen-fds`` /
    ``--milter-fds`` and this worker's slot of the session board."""

    def sockets(fds: str) -> list[socket.socket]:
        found = [socket.socket(fileno=int(fd)) for fd in fds.split(",") if fd]
        for sock in found:
            sock.set_inheritable(False)  # for our workers alone, not their children
        return found

    count = (Path(directory) / BOARD).stat().st_size // 8
    board = SessionBoard(Path(directory) / BOARD, count, index)
    return Inherited(sockets(smtp_fds), sockets(tls_fds), board, sockets(milter_fds))


def _read_ready(fd: int) -> bool:
    """True once the worker wrote its ready byte; False if it closed the pipe first."""
    try:
        return os.read(fd, 1) == b"1"
    finally:
        os.close(fd)


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker if the supervisor dies (killed with SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the worker outlives a killed supervisor
        pass
    if os.getppid() == 1:  # the supervisor died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
