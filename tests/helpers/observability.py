"""Shared helpers of the observability tests: a real uvicorn server on
127.0.0.1, a plain HTTP client, captured logging and a metrics parser."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client.parser import text_string_to_metric_families

from relay.observability.http import bound_port, make_server
from relay.observability.logging import configure_logging
from relay.settings import LoggingSettings

__all__ = ["Scrape", "captured_logging", "http_get", "json_lines", "parse_metrics", "serving"]


@asynccontextmanager
async def serving(app: Any, **config: Any) -> AsyncIterator[str]:
    """Run ``app`` under a real uvicorn on 127.0.0.1:0; yield its base URL; stop it."""
    server = make_server(app, "127.0.0.1:0", **config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{bound_port(server)}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read()


async def http_get(url: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``url`` with the standard library client; (status, headers, body)."""
    return await asyncio.to_thread(_get, url)


@contextmanager
def captured_logging(**settings: Any) -> Iterator[io.StringIO]:
    """Configure ccguard logging into a buffer; undo it afterwards."""
    buffer = io.StringIO()
    configure_logging(LoggingSettings(**settings), buffer)
    try:
        yield buffer
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_ccguard_handler", False)]:
            root.removeHandler(handler)
        root.setLevel(logging.WARNING)
        logging.captureWarnings(False)
        structlog.reset_defaults()


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line parsed as JSON (fails the test on the first line that is not)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class Scrape:
    """One parsed /metrics body: exposed family names → type, and every sample."""

    types: dict[str, str]
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float:
        """The sample ``name{labels}`` (KeyError if it is not exposed)."""
        return self.samples[(name, frozenset(labels.items()))]

    def label_names(self) -> set[str]:
        """Every label name used by any sample."""
        return {k for _, labels in self.samples for k, _ in labels}


def parse_metrics(body: bytes) -> Scrape:
    """Parse a Prometheus text exposition with prometheus_client's own parser."""
    text = body.decode()
    types = {
        line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE")
    }
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return Scrape(types, samples)
