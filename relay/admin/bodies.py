"""Bounded request bodies for the admin server.

A body is read chunk by chunk and given up on as soon as it passes
``[admin] max_request_bytes`` (whatever ``Content-Length`` says, or without
one), so a client cannot make the process hold more than the cap.  JSON is
parsed only after its nesting depth is known to be small: the parser recurses
once per level and a few KiB of ``[`` would otherwise end in ``RecursionError``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["MAX_JSON_DEPTH", "BodyLimit", "JsonTooDeep", "json_depth_exceeds", "loads_bounded"]

#: Deepest JSON nesting an admin request may use (``{"mode": "hidden"}`` has 1).
MAX_JSON_DEPTH = 32
# A JSON string (possibly unterminated) or a bracket: brackets inside strings do not nest.
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


class _ClientGone(Exception):
    """The client disconnected before its body was complete."""


class JsonTooDeep(ValueError):
    """A JSON text nests deeper than allowed; it was not parsed."""


def json_depth_exceeds(raw: bytes, limit: int) -> bool:
    """True when the JSON text ``raw`` opens more than ``limit`` arrays/objects at once."""
    depth = 0
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif token in (b"]", b"}"):
            depth -= 1
    return False


def loads_bounded(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that refuses deep nesting before parsing; raises ``ValueError``
    (:class:`JsonTooDeep` for too deep) for anything that is not acceptable JSON."""
    if json_depth_exceeds(raw, max_depth):
        raise JsonTooDeep(f"the JSON nests deeper than {max_depth} levels")
    return json.loads(raw)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            return int(value) if value.strip().isdigit() else None
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` once, then whatever the server says next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


class BodyLimit:
    """Reads each request body up to ``limit`` bytes before the app sees it.

    A body that is (or says it is) larger gets ``413`` with ``Connection: close``
    at once: the rest is never read, and the server drops the connection.
    ``on_refused("too_large")`` is called for each such request.
    """

    def __init__(
        self, app: ASGIApp, *, limit: int, on_refused: Callable[[str], None] | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        try:
            too_big = declared is not None and declared > self.limit
            body = None if too_big else await self._read(receive)
        except _ClientGone:
            return  # nobody to answer, and a cut-off body must not be acted on
        if body is None:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it grows past the limit; raises
        :class:`_ClientGone` if the client leaves first."""
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientGone
            body += message.get("body", b"")
            if len(body) > self.limit:
                return None
            if not message.get("more_body", False):
                return bytes(body)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.on_refused is not None:
            self.on_refused("too_large")
        response = JSONResponse(
            {
                "error": "too_large",
                "message": f"the request body is larger than {self.limit} bytes",
            },
            status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
