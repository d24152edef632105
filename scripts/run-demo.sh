#!/usr/bin/env bash
# Runs ccguard on config/demo.toml with `ccguard sink` as its upstream (var/sink/*.eml).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p -m 700 var
mkdir -p var/sink
if [ ! -s var/admin-users.json ]; then
  printf 'demo-password\n' | .venv/bin/ccguard admin add-user admin --password-stdin \
    --config config/demo.toml >/dev/null
fi
.venv/bin/ccguard sink --listen 127.0.0.1:10026 --dir var/sink &
sink=$!
trap 'kill $sink 2>/dev/null; wait $sink 2>/dev/null' EXIT
cat <<TXT
ccguard demo: SMTP on 127.0.0.1:10025, delivering to the sink on 127.0.0.1:10026 (var/sink/).
Admin UI: http://127.0.0.1:8025/  (user admin, password demo-password)
Try:  swaks --server 127.0.0.1:10025 --from alice@example.org --to someone@example.com
      (more in the README: a message with 12 external people in To is held for review)
Stop: Ctrl-C
TXT
.venv/bin/ccguard serve --config config/demo.toml
