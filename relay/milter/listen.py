"""The milter's listening socket when ``[smtp] workers`` > 1: bound once, by the supervisor.

Every worker would otherwise bind ``[milter] listen`` itself: the second one
finds an ``inet`` port in use, or takes a ``unix`` path over by removing the
first one's socket as stale.  So the supervisor binds it (:func:`bind_milter`),
as it binds the SMTP sockets, every worker serves the copy it inherits, and
the supervisor alone removes a ``unix`` socket when it stops.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from relay.settings_milter import MilterListen
from relay.smtp.shared_listen import bind_listeners

__all__ = ["BACKLOG", "BoundPath", "bind_milter", "remove_stale_socket"]

#: asyncio.start_server's own default: workers = 1 and workers = N queue alike.
BACKLOG = 100


def bind_milter(address: MilterListen, mode: int) -> list[socket.socket]:
    """Listening sockets for ``address``, inheritable by the workers; a ``unix``
    socket gets ``mode`` before it listens (a stale one is replaced first)."""
    if not address.is_unix:
        return bind_listeners(address.host, address.port, BACKLOG)
    path = Path(address.path)
    remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        path.chmod(mode)  # before listen(): no MTA connects under the umask's mode
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return [sock]


class BoundPath:
    """The unix socket file this process bound, removed at stop only if it is still
    that file: a socket or file another process put at the path since is left alone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        info = os.lstat(path)
        self._identity = (info.st_dev, info.st_ino)

    def remove(self) -> str | None:
        """Remove the socket; or why it was left (``None`` once removed or gone)."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return None
        if (info.st_dev, info.st_ino) != self._identity:
            return f"{self.path} was replaced since ccguard bound it; not removing it"
        self.path.unlink()
        return None


def remove_stale_socket(path: Path) -> None:
    """Remove a socket left by an earlier run (never a file that is not a socket)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(mode):
        path.unlink()
    else:
        raise OSError(f"{path} exists and is not a socket; not replacing it")
