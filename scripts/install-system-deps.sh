#!/usr/bin/env bash
# Debian packages the test suite drives for real: swaks (SMTP client), chromium (admin UI
# browser tests), prometheus (promtool checks the alert rules), postfix (smtp-source/sink).
set -euo pipefail
need=()
command -v swaks >/dev/null || need+=(swaks)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v promtool >/dev/null || need+=(prometheus)
command -v smtp-source >/dev/null || [ -x /usr/sbin/smtp-source ] || need+=(postfix)
command -v sqlite3 >/dev/null || need+=(sqlite3)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
