#!/usr/bin/env bash
# Runs ccguard on config/demo.toml with `ccguard sink` as its upstream (var/sink/*.eml).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var/sink
.venv/bin/ccguard sink --listen 127.0.0.1:10026 --dir var/sink &
sink=$!
trap 'kill $sink 2>/dev/null; wait $sink 2>/dev/null' EXIT
cat <<TXT
ccguard demo: SMTP on 127.0.0.1:10025, delivering to the sink on 127.0.0.1:10026 (var/sink/).
Try:  swaks --server 127.0.0.1:10025 --from alice@example.org --to someone@example.com
Stop: Ctrl-C
TXT
.venv/bin/ccguard serve --config config/demo.toml
