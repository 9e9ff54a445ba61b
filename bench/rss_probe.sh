#!/usr/bin/env bash
# Where does the daemon's idle RSS go after a burst of connections? (BENCHMARKS.md, "Idle RSS")
#
#   bench/rss_probe.sh [CONNECTIONS]     # default 200
#
# SQLite daemon from $CARGO_TARGET_DIR/release (run bench/api_bench.sh or cargo build --release
# --bin cinderblock --example api_bench first), 1,000 volumes, then 5 s of wrk GETs on
# CONNECTIONS connections; prints VmRSS after the seed, after the burst, after 10 s idle, and after
# `malloc_trim(0)` is called in the daemon through gdb (installed when missing). A large drop at
# the last step means the memory is free but kept by glibc's allocator, not live data.
# Extra environment for the daemon goes in PROBE_ENV, e.g.
#   PROBE_ENV="LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2 MALLOC_CONF=background_thread:true,dirty_decay_ms:1000" bench/rss_probe.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T=${CARGO_TARGET_DIR:-/var/tmp/cinderblock-target}/release
CONNS=${1:-200}
command -v wrk >/dev/null || apt-get install -y wrk >/dev/null
command -v gdb >/dev/null || apt-get install -y gdb >/dev/null
W=$(mktemp -d /var/tmp/cbb-rss.XXXXXX)
P=""
trap '[ -z "$P" ] || { kill "$P" 2>/dev/null; wait "$P" 2>/dev/null; }; rm -rf "$W"' EXIT
mkdir -p "$W/pool"
cp "$T/cinderblock" "$W/cbbd"
cat >"$W/c.toml" <<EOF
listen = "127.0.0.1:0"
log = "warn"
[database]
url = "sqlite://$W/x.db"
[[pools]]
name = "default"
path = "$W/pool"
max_over_subscription_ratio = 1000.0
EOF
# shellcheck disable=SC2086
env ${PROBE_ENV:-} "$W/cbbd" serve --config "$W/c.toml" >"$W/out" 2>"$W/err" &
P=$!
for _ in $(seq 100); do grep -q listening "$W/out" && break; sleep 0.1; done
U=$(sed -n 's/^cinderblock listening on //p' "$W/out")
PR=0123456789abcdef0123456789abcdef
rss() { awk '/^VmRSS/ {print $2 " kB"}' "/proc/$P/status"; }
"$T/examples/api_bench" seed --url "$U" --project "$PR" --count 1000 >/dev/null
"$T/examples/api_bench" paths --url "$U" --project "$PR" --out "$W/paths" >/dev/null
cat >"$W/get.lua" <<'EOF'
local paths = {}
init = function(args) for l in io.lines(args[1]) do paths[#paths + 1] = l end end
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
EOF
echo "after seeding 1,000 volumes: $(rss)"
wrk -t2 -c"$CONNS" -d5s -s "$W/get.lua" "$U" -- "$W/paths" | grep 'Requests/sec'
echo "after 5 s of GETs on $CONNS connections: $(rss)"
sleep 10
echo "after 10 s idle: $(rss)"
gdb -p "$P" -batch -ex 'call (int)malloc_trim(0)' >/dev/null 2>&1 || echo "(gdb could not attach)"
echo "after malloc_trim(0): $(rss)"
