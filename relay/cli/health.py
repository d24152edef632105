"""``ccguard health``: is the local ccguard alive? (for Docker HEALTHCHECK and scripts)."""

from __future__ import annotations

import argparse
import socket
import ssl
import urllib.request
from typing import Any

from relay.cli.config import load_or_report
from relay.settings import Settings, parse_listen

__all__ = ["check_health", "register"]

_ANY_ADDRESS = {"0.0.0.0", "::", ""}


def _local(host: str) -> str:
    host = "127.0.0.1" if host in _ANY_ADDRESS else host
    return f"[{host}]" if ":" in host else host


def _http_url(settings: Settings) -> str | None:
    if settings.metrics.listen:
        host, port = parse_listen(settings.metrics.listen)
        return f"http://{_local(host)}:{port}/healthz"
    if settings.admin.enabled:
        host, port = parse_listen(settings.admin.listen)
        scheme = "https" if settings.admin.tls_cert else "http"
        return f"{scheme}://{_local(host)}:{port}/healthz"
    return None


def _check_http(url: str, timeout: float) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False  # our own listener on this host: alive is what counts
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
        if resp.status != 200:
            raise OSError(f"{url} answered {resp.status}")
    return f"{url} answered 200"


def _check_smtp(settings: Settings, timeout: float) -> str:
    host, port = parse_listen(settings.smtp.listen)
    address = "127.0.0.1" if host in _ANY_ADDRESS else host
    with socket.create_connection((address, port), timeout=timeout) as sock:
        greeting = sock.recv(512)
        sock.sendall(b"QUIT\r\n")
    if not greeting.startswith(b"220"):
        raise OSError(f"SMTP {address}:{port} greeted with {greeting[:60]!r}")
    return f"SMTP {address}:{port} greeted with 220"


def check_health(settings: Settings, timeout: float = 5.0) -> str:
    """Probe /healthz if an HTTP listener is configured, else the SMTP greeting.

    Returns what answered; raises ``OSError`` when ccguard does not answer.
    """
    url = _http_url(settings)
    return _check_http(url, timeout) if url else _check_smtp(settings, timeout)


def _health(args: argparse.Namespace) -> int:
    settings = load_or_report(args.config)
    if settings is None:
        return 2
    try:
        print(check_health(settings, args.timeout))
    except OSError as exc:
        print(f"ccguard is not healthy: {exc}")
        return 1
    return 0


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``health``."""
    health = subparsers.add_parser(
        "health",
        help="check that the local ccguard answers (exit 0) or not (exit 1)",
        parents=[common],
    )
    health.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    health.set_defaults(func=_health)
