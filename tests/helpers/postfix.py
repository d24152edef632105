"""A private Postfix instance for end-to-end tests, built in a temp directory.

Everything lives under one base directory: its own ``config_directory`` (main.cf and
master.cf written here), ``queue_directory``, ``data_directory`` and ``maillog_file``.
It listens on 127.0.0.1 only, delivers nothing locally and never touches the
system-wide instance in /etc/postfix.  Postfix needs root to start; callers check
with :func:`require_postfix` first so a missing tool fails loudly instead of skipping.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "POSTFIX_TOOLS",
    "PostfixInstance",
    "instance_dir",
    "require_postfix",
    "write_instance",
]

POSTFIX_TOOLS = ("postfix", "postconf", "postqueue", "postsuper")
SBIN = Path("/usr/sbin")

# One line per service; chroot column "n" everywhere so nothing needs copying into a jail.
_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command + args
{smtpd_listen} inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
"""

# The content-filter shape of the README: a dedicated transport to ccguard (its own
# concurrency, no TLS whatever the site's smtp_tls_security_level, no address rewriting,
# no 8bit->7bit conversion) and the re-injection listener ccguard delivers to.
FILTER_TRANSPORT = """\
ccguard   unix  -       -       n       -       10      smtp
  -o syslog_name=postfix/ccguard
  -o smtp_tls_security_level=none
  -o smtp_generic_maps=
  -o disable_mime_output_conversion=yes
"""
REINJECT_SERVICE = """\
{listen} inet n - n - 10 smtpd
  -o content_filter=
  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters
  -o smtpd_recipient_restrictions=permit_mynetworks,reject
  -o mynetworks=127.0.0.0/8
  -o smtpd_authorized_xforward_hosts=127.0.0.0/8
"""


def instance_dir() -> Path:
    """A fresh base directory for one instance.

    Not under pytest's ``tmp_path``: that sits below a 0700 directory, and Postfix
    opens files in its queue and data directories as the unprivileged `postfix` user,
    which must be able to reach them.  :meth:`PostfixInstance.discard` removes it.
    """
    base = Path(tempfile.mkdtemp(prefix="ccguard-postfix-"))
    base.chmod(0o755)
    return base


def require_postfix() -> None:
    """Fail (never skip) with a clear message when a private Postfix cannot run here."""
    missing = [tool for tool in POSTFIX_TOOLS if not (SBIN / tool).exists()]
    if missing:
        raise AssertionError(
            f"Postfix tools missing ({', '.join(missing)} not in {SBIN}): "
            "install the Debian package `postfix` (./scripts/install-system-deps.sh)"
        )
    if os.geteuid() != 0:
        raise AssertionError(
            "the Postfix end-to-end tests start a private Postfix instance, which needs root "
            "(Postfix daemons drop privileges to the `postfix` user): run them as root"
        )


@dataclass
class PostfixInstance:
    """One private Postfix: its directories, its ports and how to drive it."""

    base: Path
    smtp_port: int
    reinject_port: int | None = None
    started: bool = field(default=False, init=False)

    @property
    def config_dir(self) -> Path:
        return self.base / "config"

    @property
    def queue_dir(self) -> Path:
        return self.base / "queue"

    @property
    def maillog(self) -> Path:
        return self.base / "maillog"

    def _run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}
        return subprocess.run(
            [str(SBIN / argv[0]), "-c", str(self.config_dir), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )

    def start(self) -> None:
        """``postfix -c DIR start``; waits until the master is ready."""
        done = self._run("postfix", "start")
        if done.returncode != 0:
            raise AssertionError(
                f"private postfix did not start ({done.returncode}): {done.stdout}{done.stderr}"
                f"\n--- maillog ---\n{self.log_text()}"
            )
        self.started = True

    def master_pid(self) -> int | None:
        try:
            text = (self.queue_dir / "pid" / "master.pid").read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def stop(self) -> None:
        """``postfix -c DIR stop``; SIGKILL the master's process group if it is still alive."""
        pid = self.master_pid()
        self._run("postfix", "stop", timeout=20)
        if pid is not None and _alive(pid):
            _wait(lambda: not _alive(pid), 5)
        if pid is not None and _alive(pid):
            os.killpg(pid, signal.SIGKILL)
            _wait(lambda: not _alive(pid), 5)
        self.started = False

    def queue_ids(self) -> list[str]:
        """Queue ids ``postqueue -p`` lists (deferred, active, incoming, hold)."""
        done = self._run("postqueue", "-p")
        ids = []
        for line in done.stdout.splitlines():
            word = line.split(" ", 1)[0].rstrip("*!")
            if word and word[0].isalnum() and word not in ("Mail", "--"):
                ids.append(word)
        return ids

    def queue_listing(self) -> str:
        return self._run("postqueue", "-p").stdout

    def flush(self) -> None:
        """``postqueue -c DIR -f``: attempt delivery of everything queued now."""
        done = self._run("postqueue", "-f")
        if done.returncode != 0:
            raise AssertionError(f"postqueue -f failed: {done.stdout}{done.stderr}")

    def discard(self, keep_log: Path | None = None) -> None:
        """Delete the instance's directory (stop it first), keeping a copy of its maillog."""
        pid = self.master_pid()
        if pid is not None and _alive(pid):
            raise RuntimeError(f"Postfix master still running in {self.base}; not removing it")
        if keep_log is not None and self.maillog.exists():
            shutil.copyfile(self.maillog, keep_log)
        shutil.rmtree(self.base, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.maillog.read_text(errors="replace")
        except OSError:
            return "(no maillog written)"


def write_instance(
    base: Path,
    *,
    smtp_port: int,
    relayhost: str,
    content_filter: str | None = None,
    reinject_port: int | None = None,
    main: dict[str, str] | None = None,
) -> PostfixInstance:
    """Create the directories and write main.cf + master.cf of a private instance.

    ``main`` adds or overrides main.cf parameters (e.g. the SMTP client's TLS and SASL).
    """
    instance = PostfixInstance(base=base, smtp_port=smtp_port, reinject_port=reinject_port)
    # Postfix daemons run as `postfix` and must reach the queue below this directory.
    for folder in (base, instance.config_dir, instance.queue_dir):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o755)
    # data_directory (master.lock, caches) belongs to mail_owner; `postfix start` creates it.
    main_cf = _main_cf(instance, relayhost=relayhost, content_filter=content_filter, extra=main)
    (instance.config_dir / "main.cf").write_text(main_cf)
    master = _MASTER_CF.format(smtpd_listen=f"127.0.0.1:{smtp_port}")
    if reinject_port is not None:
        master += FILTER_TRANSPORT + REINJECT_SERVICE.format(listen=f"127.0.0.1:{reinject_port}")
    (instance.config_dir / "master.cf").write_text(master)
    return instance


def _main_cf(
    instance: PostfixInstance,
    *,
    relayhost: str,
    content_filter: str | None,
    extra: dict[str, str] | None = None,
) -> str:
    base = instance.base
    lines = {
        "compatibility_level": "3.6",
        "queue_directory": str(instance.queue_dir),
        "data_directory": str(base / "data"),
        "maillog_file": str(instance.maillog),
        "maillog_file_prefixes": str(base),
        "myhostname": "postfix.example.net",
        "mydomain": "example.net",
        "myorigin": "$myhostname",
        "mydestination": "",
        "local_recipient_maps": "",
        "alias_maps": "",
        "alias_database": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "relayhost": relayhost,
        "smtp_tls_security_level": "none",
        "smtpd_tls_security_level": "none",
        "smtp_host_lookup": "native",
        "smtpd_peername_lookup": "no",
        "biff": "no",
        "smtputf8_enable": "yes",
        # A deferred message waits for `postqueue -f`, never for a timer during a test.
        "minimal_backoff_time": "300s",
        "maximal_backoff_time": "600s",
        "queue_run_delay": "300s",
        "smtp_connect_timeout": "5s",
        "notify_classes": "",
    }
    if content_filter is not None:
        lines["content_filter"] = content_filter
        # Address mappings happen once, on re-injection after ccguard, not twice.
        lines["receive_override_options"] = "no_address_mappings"
    lines.update(extra or {})
    return "".join(f"{key} = {value}\n" for key, value in lines.items())


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()
