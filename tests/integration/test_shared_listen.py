"""``[smtp] workers``' shared accept in one process: real listening sockets on
loopback, a real session board file, acceptors standing in for workers."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from relay.smtp.shared_listen import SessionBoard, SharedAcceptor
from tests.helpers.waiting import wait_until

WAIT_BOUND = 0.02  # how long a busier worker leaves a connection to a less busy one


class Recorded(asyncio.Protocol):
    """A session that notes when it began and hangs up."""

    def __init__(self, began: list[float]) -> None:
        self._began = began

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._began.append(time.monotonic())
        transport.close()


@asynccontextmanager
async def acceptor(
    listening: socket.socket, board: Path, index: int, sessions: int
) -> AsyncIterator[tuple[SharedAcceptor, list[float], list[int]]]:
    """Worker ``index`` of two, holding ``sessions`` sessions, on a copy of ``listening``."""
    began: list[float] = []
    overdue: list[int] = []
    shared = SharedAcceptor(
        listening.dup(), lambda: Recorded(began), tls=None,
        board=SessionBoard(board, 2, index), sessions=lambda: sessions,
        overdue=lambda: overdue.append(1),
    )  # fmt: skip
    shared.start()
    try:
        yield shared, began, overdue
    finally:
        shared.close()


@asynccontextmanager
async def listening_socket(tmp_path: Path) -> AsyncIterator[tuple[socket.socket, Path]]:
    sock = socket.create_server(("127.0.0.1", 0))
    board = tmp_path / "sessions.board"
    SessionBoard.create(board, 2)
    try:
        yield sock, board
    finally:
        sock.close()


def connect(sock: socket.socket) -> socket.socket:
    return socket.create_connection(sock.getsockname()[:2], timeout=10)


async def test_a_worker_that_stopped_accepting_is_not_waited_for(tmp_path: Path) -> None:
    async with listening_socket(tmp_path) as (sock, board):
        async with acceptor(sock, board, 1, sessions=0):
            pass  # worker 1 stopped (draining, or gone) with no session
        async with acceptor(sock, board, 0, sessions=3) as (_, began, overdue):
            with connect(sock):
                await wait_until(lambda: len(began) == 1, "the session did not begin")
    assert overdue == []  # it did not wait 20 ms for a worker that takes nothing


async def test_a_worker_not_started_yet_is_not_waited_for(tmp_path: Path) -> None:
    async with (
        listening_socket(tmp_path) as (sock, board),  # worker 1 still starting
        acceptor(sock, board, 0, sessions=3) as (_, began, overdue),
    ):
        with connect(sock):
            await wait_until(lambda: len(began) == 1, "the session did not begin")
    assert overdue == []


async def left_to_worker_1(
    sock: socket.socket, other: socket.socket, board: Path, began: list[float]
) -> None:
    """One connection that worker 0 looks at, waits for, and worker 1 (the test) takes."""
    worker1 = SessionBoard(board, 2, 1)  # reads worker 0's slot as "elsewhere"
    for _ in range(5):  # a slow machine may let worker 0's 20 ms pass first: again
        SessionBoard(board, 2, 0).publish(-1)  # worker 0 writes its count when it looks
        with connect(sock):
            await wait_until(lambda: worker1.fewest_elsewhere() == 1, "worker 0 did not look")
            try:
                taken, _ = other.accept()
            except BlockingIOError:  # worker 0 took it after its 20 ms
                await wait_until(lambda: len(began) == 1, "the session did not begin")
                began.clear()
                continue
            taken.close()
            return
    raise AssertionError("worker 0 never left a connection for 20 ms")


async def test_a_wait_that_ended_does_not_shorten_the_next_one(tmp_path: Path) -> None:
    # Worker 1 (played by the test: 0 sessions) takes a connection worker 0 (1
    # session) waited for; the next one, 30 ms later, must again be left to
    # worker 1 for the whole bound, not taken at once and counted "overdue".
    async with listening_socket(tmp_path) as (sock, board):
        SessionBoard(board, 2, 1).publish(0)
        other = sock.dup()
        other.setblocking(False)
        try:
            async with acceptor(sock, board, 0, sessions=1) as (_, began, _overdue):
                await left_to_worker_1(sock, other, board, began)
                await asyncio.sleep(0.03)  # a gap: longer than the bound, shorter than 100 ms
                opened = time.monotonic()
                with connect(sock):
                    await wait_until(lambda: len(began) == 1, "the session did not begin")
        finally:
            other.close()
    assert began[0] - opened >= WAIT_BOUND, began[0] - opened
