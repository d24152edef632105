#!/bin/bash
# Instructions ccguard executes per relayed message, counted by callgrind: the same
# figure for the same code and load whatever else the (shared, noisy) machine does,
# so two source trees can be compared where msg/s is within noise.
#
#   bench/instructions_per_message.sh TREE [MESSAGES]
#
# TREE: a ccguard source tree (e.g. `git archive REV | tar -x -C /tmp/rev`), run with
# this checkout's venv.  ccguard runs under valgrind with counting off; 200 messages
# warm it up, then MESSAGES (default 300) are relayed with counting on, from
# smtp-source -s 5 -d (1 recipient, 4 KiB) into smtp-sink, on 127.0.0.1.
# Needs valgrind and Postfix's smtp-source/smtp-sink (scripts/install-system-deps.sh).
set -euo pipefail
tree=$(cd "$1" && pwd); msgs=${2:-300}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
work=$(mktemp -d); trap 'kill $vg $sink 2>/dev/null || true; rm -rf "$work"' EXIT
port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
sinkp=$(port); smtp=$(port); admin=$(port)
user=(); [ "$(id -u)" = 0 ] && user=(-u nobody)  # smtp-sink refuses to keep root
/usr/sbin/smtp-sink "${user[@]}" "127.0.0.1:$sinkp" 1000 & sink=$!
cat > "$work/ccguard.toml" <<TOML
[smtp]
listen = "127.0.0.1:$smtp"
hostname = "ccguard.bench"
event_loop = "asyncio"
[upstream]
host = "127.0.0.1"
port = $sinkp
starttls = "off"
[organisation]
internal_domains = ["example.org"]
[admin]
listen = "127.0.0.1:$admin"
[logging]
format = "json"
level = "info"
hash_key = "bench-only"
TOML
cd "$tree"
PYTHONPATH=$tree valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$work/cg.out" "$py" -m relay serve --config "$work/ccguard.toml" \
    > "$work/ccguard.log" 2>&1 & vg=$!
for _ in $(seq 1 600); do (echo > "/dev/tcp/127.0.0.1/$smtp") 2>/dev/null && break; sleep 0.5; done
source=(/usr/sbin/smtp-source -s 5 -d -l 4096 -r 1 -t bob@example.com -f alice@example.org)
"${source[@]}" -m 200 "127.0.0.1:$smtp"
callgrind_control -i on $vg > /dev/null
"${source[@]}" -m "$msgs" "127.0.0.1:$smtp"
callgrind_control -i off $vg > /dev/null
callgrind_control -d $vg > /dev/null
kill $vg; wait $vg 2>/dev/null || true
cat "$work"/cg.out* | awk -v m="$msgs" '/^totals:/ {s += $2}
    END {printf "%d instructions for %d messages: %.0f per message\n", s, m, s / m}'
