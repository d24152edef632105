"""Several real ``ccguard serve`` processes sharing one database (an SQLite file or a
PostgreSQL URL), as an operator runs them.

Each instance has its own SMTP and admin port; all share the database, the
users file and the session key file.  Used by the multi-instance tests and by
bench/multi_instance.py.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.process import free_port, start_ccguard

__all__ = ["Instance", "readyz", "start_instance", "stop_instance", "wait_ready", "write_instance"]


@dataclass
class Instance:
    """One configured instance; ``proc`` is set while it runs."""

    name: str
    config: Path
    smtp_port: int
    admin_port: int
    proc: subprocess.Popen[bytes] | None = None
    #: Extra environment of the process (e.g. ``PGPASSWORD``).
    env: dict[str, str] | None = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


def write_instance(
    folder: Path,
    name: str,
    *,
    upstream_port: int,
    database: Path | str,
    env: dict[str, str] | None = None,
    claim_lease: float | None = None,
    claim_wait: float | None = None,
    pool_size: int = 0,
    split: bool = True,
    shared_key: bool = True,
) -> Instance:
    """Write ``folder/<name>.toml`` for one instance on the shared ``database``
    (keys left ``None`` keep their defaults)."""
    smtp_port, admin_port = free_port(), free_port()
    rule = (
        '[[policy.rules]]\nname = "split-all"\nmin_visible_external = 2\naction = "split"\n'
        if split
        else '[[policy.rules]]\nname = "hold"\nmin_visible_external = 2\naction = "quarantine"\n'
    )
    config = folder / f"{name}.toml"
    config.write_text(
        f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\nhostname = "{name}.ccguard.test"\n'
        f'[upstream]\nhost = "127.0.0.1"\nport = {upstream_port}\nstarttls = "off"\n'
        f"pool_size = {pool_size}\ntimeout = 10\nconnect_timeout = 2\n"
        f'[organisation]\ninternal_domains = ["example.org"]\n'
        f'[quarantine]\ndatabase = "{database}"\n'
        + (f"claim_lease = {claim_lease}\n" if claim_lease is not None else "")
        + (f"claim_wait = {claim_wait}\n" if claim_wait is not None else "")
        + f'[admin]\nlisten = "127.0.0.1:{admin_port}"\nusers_file = "{folder}/users.json"\n'
        + (f'session_key_file = "{folder}/session.key"\n' if shared_key else "")
        + f'[logging]\nhash_key = "test-key"\n{rule}',
        encoding="utf-8",
    )
    return Instance(name, config, smtp_port, admin_port, env=env)


def start_instance(instance: Instance) -> Instance:
    """Start ``ccguard serve`` for ``instance`` (does not wait)."""
    instance.proc = start_ccguard("serve", "--config", str(instance.config), env=instance.env)
    return instance


def readyz(instance: Instance) -> int | None:
    """The status code of the instance's /readyz, or None if nothing answers."""
    try:
        with urllib.request.urlopen(instance.admin_url + "/readyz", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


def wait_ready(instance: Instance, timeout: float = 30) -> None:
    """Wait until /readyz answers 200; fail with the process's output if it died."""
    proc = instance.proc
    assert proc is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _, err = proc.communicate()
            tail = err.decode(errors="replace")[-2000:]
            raise AssertionError(f"{instance.name} exited {proc.returncode}: {tail}")
        if readyz(instance) == 200:
            return
        time.sleep(0.05)
    raise AssertionError(f"{instance.name}: /readyz not 200 after {timeout}s")


def stop_instance(instance: Instance) -> str:
    """Stop the instance (SIGTERM, then SIGKILL after 20 s); returns its stderr."""
    proc, instance.proc = instance.proc, None
    if proc is None:
        return ""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    _, err = proc.communicate()
    return err.decode(errors="replace")


def json_of(raw: bytes) -> object:
    """Parse a JSON body (helper for urllib callers)."""
    return json.loads(raw)
