#!/usr/bin/env bash
# Creates .venv with ccguard and its test tools. On Debian, python3 -m venv needs the
# python3-venv package (ensurepip); install it when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -m venv .venv 2>/dev/null; then
  rm -rf .venv
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "python3 -m venv failed: installing Debian's python3-venv"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv
  "$PYTHON" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
# constraints.txt pins every dependency (regenerate with `make lock`).
.venv/bin/pip install -q -c constraints.txt -e '.[test]'
