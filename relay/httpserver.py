"""An HTTP app served by uvicorn inside the relay's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from relay.observability.http import bound_port, make_server
from relay.settings import parse_listen

__all__ = ["HttpServer", "bind_tcp"]


def bind_tcp(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (IPv4 or IPv6); raises ``OSError``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class HttpServer:
    """One named uvicorn server (``admin`` or ``metrics``) on ``listen``."""

    def __init__(self, name: str, app: Any, listen: str, **uvicorn_config: Any) -> None:
        self.name = name
        self._listen = listen
        self._server = make_server(app, listen, **uvicorn_config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and serve; raises ``OSError`` if the address cannot be bound.

        The socket is bound here because uvicorn calls ``sys.exit()`` when it
        cannot bind, which would end the whole relay from inside a task.
        """
        sock = bind_tcp(*parse_listen(self._listen))
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"{self.name} HTTP server on {self._listen} did not start")
            await asyncio.sleep(0.01)

    @property
    def port(self) -> int:
        return bound_port(self._server)

    @property
    def listen(self) -> str:
        host, _ = parse_listen(self._listen)
        return f"{host}:{self.port}" if self._server.started else self._listen

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await self._task
        self._task = None
