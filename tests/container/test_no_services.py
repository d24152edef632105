"""`make test` installs Debian packages for their programs only: installing prometheus
(for promtool) with scripts/apt-install-no-services.sh, in a fresh Debian container,
neither starts a Prometheus nor enables its unit, and leaves no policy-rc.d behind."""

from __future__ import annotations

from tests.helpers.docker import BuiltImage, Docker
from tests.helpers.process import ROOT

_CHECK = """
set -e
apt-get update -qq
{install} >/dev/null
test -e /usr/sbin/policy-rc.d && echo "policy-rc.d: left" || echo "policy-rc.d: removed"
echo "enabled: $(ls /etc/systemd/system/*.wants/ 2>/dev/null | grep -c '^prometheus' || true)"
echo "running: $(cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^prometheus$' || true)"
"""


def _install_in_fresh_debian(docker: Docker, image: BuiltImage, install: str) -> list[str]:
    script = ROOT / "scripts" / "apt-install-no-services.sh"
    args = ["run", "--rm", "--network", "host", "--user", "0"]
    args += ["-v", f"{script}:/opt/apt-install-no-services.sh:ro", "--entrypoint", "sh"]
    result = docker.run(*args, image.base, "-c", _CHECK.format(install=install), timeout=600)
    return result.stdout.strip().splitlines()[-3:]


def test_installing_prometheus_for_promtool_starts_and_enables_no_service(
    docker: Docker, image: BuiltImage
) -> None:
    lines = _install_in_fresh_debian(docker, image, "/opt/apt-install-no-services.sh prometheus")
    assert lines == ["policy-rc.d: removed", "enabled: 0", "running: 0"]
