#!/usr/bin/env bash
# Runs ccguard on config/demo.toml with `ccguard sink` as its upstream (var/sink/*.eml).
# Ctrl-C stops both; the exit status is ccguard's (0 after a clean stop).
# CCGUARD_* variables override the config as usual; the sink listens on
# CCGUARD_UPSTREAM__PORT when that is set (default 10026, the demo config's upstream).
set -euo pipefail
cd "$(dirname "$0")/.."
sink_port=${CCGUARD_UPSTREAM__PORT:-10026}
mkdir -p -m 700 var
mkdir -p var/sink
if [ ! -s var/admin-users.json ]; then
  printf 'demo-password\n' | .venv/bin/ccguard admin add-user admin --password-stdin \
    --config config/demo.toml >/dev/null
fi
.venv/bin/ccguard sink --listen "127.0.0.1:$sink_port" --dir var/sink &
sink=$!
# Ctrl-C reaches the sink too, so it may be gone already: neither that nor its exit
# status may turn a clean stop into a failure (make would print "Error 1").
stop_sink() {
  kill "$sink" 2>/dev/null || true
  wait "$sink" 2>/dev/null || true
}
trap stop_sink EXIT
cat <<TXT
ccguard demo: SMTP on ${CCGUARD_SMTP__LISTEN:-127.0.0.1:10025}, delivering to the sink on 127.0.0.1:$sink_port (var/sink/).
Admin UI: http://${CCGUARD_ADMIN__LISTEN:-127.0.0.1:8025}/  (user admin, password demo-password)
Try:  swaks --server 127.0.0.1:10025 --from alice@example.org --to someone@example.com
      (more in the README: a message with 12 external people in To is held for review)
Stop: Ctrl-C
TXT
status=0
.venv/bin/ccguard serve --config config/demo.toml || status=$?
exit "$status"
