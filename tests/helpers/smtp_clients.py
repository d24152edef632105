"""Real SMTP client programs (swaks, ``openssl s_client``) run without blocking the event loop.

The relay under test may run in the test's own event loop, so the programs
are started with :func:`asyncio.create_subprocess_exec` and awaited.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SWAKS", "ClientRun", "openssl_certificate_subject", "openssl_smtp", "swaks"]

SWAKS = shutil.which("swaks") or "swaks"
OPENSSL = shutil.which("openssl") or "openssl"


@dataclass
class ClientRun:
    """A finished client program: exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str

    def replies(self) -> list[str]:
        """The server's replies swaks printed (``<-``/``<~`` lines, marker stripped)."""
        lines = []
        for line in self.stdout.splitlines():
            if line.startswith(("<-", "<~", "<**", "<~*")):
                lines.append(line.split(" ", 1)[1].strip() if " " in line else "")
        return lines


async def _run(*argv: str, stdin: bytes | None = None, timeout: float = 60) -> ClientRun:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return ClientRun(proc.returncode or 0, out.decode(errors="replace"), err.decode())


async def swaks(port: int, *args: str, sender: str = "noreply@example.org") -> ClientRun:
    """swaks to 127.0.0.1:``port`` from ``sender`` to bob@example.com, plus ``args``."""
    assert shutil.which("swaks"), "swaks is not installed: run scripts/install-system-deps.sh"
    return await _run(
        SWAKS, "--server", f"127.0.0.1:{port}", "--ehlo", "client.example.org",
        "--from", sender, "--to", "bob@example.com",
        "--header", "Subject: swaks over TLS", *args,
    )  # fmt: skip


async def openssl_smtp(
    port: int, commands: list[bytes], *, starttls: bool = True, timeout: float = 30
) -> ClientRun:
    """``openssl s_client`` (``-starttls smtp`` unless implicit TLS) sending ``commands``
    one at a time, each after the reply to the one before; the last should be QUIT."""
    argv = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-quiet"]
    if starttls:
        argv += ["-starttls", "smtp"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            if not starttls:
                seen += await _reply(proc.stdout)  # the greeting
            for command in commands:
                proc.stdin.write(command + b"\r\n")
                await proc.stdin.drain()
                seen += await _reply(proc.stdout)
            proc.stdin.close()
            err = await proc.stderr.read()
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return ClientRun(proc.returncode or 0, "\n".join(seen), err.decode(errors="replace"))


async def _reply(stream: asyncio.StreamReader) -> list[str]:
    """The lines of one (possibly multi-line) SMTP reply; [] if the stream ended."""
    lines = []
    while line := (await stream.readline()).decode(errors="replace").rstrip("\r\n"):
        lines.append(line)
        if len(line) >= 4 and line[3] == " ":
            break
    return lines


async def openssl_certificate_subject(
    port: int, *, starttls: bool = True, extra: tuple[str, ...] = ()
) -> ClientRun:
    """The handshake summary (``-brief``: protocol, cipher, peer subject) of a connection."""
    argv = [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-brief", *extra]
    if starttls:
        argv += ["-starttls", "smtp"]
    return await _run(*argv, stdin=b"QUIT\r\n")


def pem_subject(cert: Path) -> str:
    """The subject line of a PEM certificate, as ``openssl x509`` prints it."""
    out = subprocess.run(
        [OPENSSL, "x509", "-in", str(cert), "-noout", "-subject"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return out.stdout.strip()
