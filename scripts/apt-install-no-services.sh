#!/usr/bin/env bash
# apt-get install PACKAGE... for their programs only: no service of theirs is started,
# now or at boot. (On an ordinary systemd host, Debian's prometheus package would
# otherwise enable and start a system-wide Prometheus, docker.io a system dockerd.)
#  - while apt-get runs, /usr/sbin/policy-rc.d answers 101 ("action forbidden"), which
#    invoke-rc.d and deb-systemd-invoke obey on sysvinit and systemd hosts alike;
#  - afterwards every systemd unit of the newly installed packages (dependencies too,
#    e.g. containerd for docker.io) is disabled with
#    deb-systemd-helper (which also works where systemd is not running), so package
#    upgrades leave them disabled too. `systemctl enable --now UNIT` if you want one.
# An existing policy-rc.d is left as it is. Used by scripts/install-system-deps.sh.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# scripts/apt-install-no-services.sh: start no services\nexit 101\n' |
    $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod 755 /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
installed() { dpkg-query -W -f '${db:Status-Status} ${Package}\n' | awk '$1 == "installed" { print $2 }' | sort; }
before=$(installed)
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confold "$@"
units=()
for pkg in $(comm -13 <(echo "$before") <(installed)); do
  while IFS= read -r path; do
    units+=("$pkg:${path##*/}")
  done < <(dpkg -L "$pkg" 2>/dev/null |
    grep -E '^(/usr)?/lib/systemd/system/[^/@]+\.(service|socket|timer)$' || true)
done
if [ ${#units[@]} -gt 0 ] && command -v deb-systemd-helper >/dev/null; then
  for entry in "${units[@]}"; do
    # The way the package's own maintainer scripts call it (it refuses other callers):
    # removes the unit's symlinks and the "enabled by the package" record.
    $SUDO env DPKG_MAINTSCRIPT_PACKAGE="${entry%%:*}" \
      deb-systemd-helper disable "${entry#*:}" >/dev/null 2>&1 || true
  done
  echo "left disabled (systemctl enable --now UNIT to use one): ${units[*]#*:}"
fi
