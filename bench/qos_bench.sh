#!/usr/bin/env bash
# QoS enforcement benchmark (issue 10 B.9): a volume whose type carries back-end QoS specs of
# 1,000 IOPS and 50 MiB/s, read with fio's nbd engine (libnbd) over the daemon's NBD unix
# socket, while an unlimited volume on the same server is read at the same time.
#
#   bench/qos_bench.sh [BINARY]     (default: $CARGO_TARGET_DIR/debug/cinderblock)
#
# Rows: 4 KiB random reads (the IOPS limit binds) and 1 MiB sequential reads (the bandwidth
# limit binds), each for BENCH_SECONDS (default 20) on the limited volume with the unlimited one
# running beside it, then the unlimited one alone. Output: one line per run, and fio's JSON
# under $BENCH_OUT. The first 2 s of each run are not counted (fio --ramp_time): a full bucket
# lets one second of the rate through at once, as QEMU and Cinder front ends do.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/cinderblock-target}
BIN=${1:-$CARGO_TARGET_DIR/debug/cinderblock}
SECS=${BENCH_SECONDS:-20}
OUT=${BENCH_OUT:-/var/tmp/cinderblock-bench/qos-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
command -v fio >/dev/null || die "fio is missing (Debian: fio)"
fio --enghelp 2>/dev/null | grep -qw nbd || die "this fio has no nbd engine"

WORK=$(mktemp -d /tmp/cinderblock-qos-XXXXXX)
PID=""
cleanup() {
    [ -z "$PID" ] || { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/config.toml" <<EOF
listen = "127.0.0.1:0"
log = "warn"
[database]
url = "sqlite://$WORK/db.sqlite"
[exports]
nbd_unix_socket = "$WORK/nbd.sock"
[[pools]]
name = "default"
path = "$WORK/pool"
availability_zone = "nova"
volume_types = ["__DEFAULT__", "SSD"]
EOF
env -i PATH="$PATH" HOME="$WORK" "$BIN" serve --config "$WORK/config.toml" >"$WORK/stdout" 2>"$OUT/daemon.log" &
PID=$!
BASE=""
for _ in $(seq 300); do
    BASE=$(sed -n 's/^cinderblock listening on //p' "$WORK/stdout" | head -n1)
    [ -n "$BASE" ] && break
    kill -0 "$PID" 2>/dev/null || die "the daemon exited: $(tail -5 "$OUT/daemon.log")"
    sleep 0.1
done
[ -n "$BASE" ] || die "the daemon printed no address"
P=$(head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n')
api() { curl -sf -X "$1" -H 'Content-Type: application/json' ${3:+-d "$3"} "$BASE/v3/$P$2"; }
jget() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

Q=$(api POST /qos-specs '{"qos_specs": {"name": "limited", "consumer": "back-end", "total_iops_sec": "1000", "total_bytes_sec": "52428800"}}' | jget 'd["qos_specs"]["id"]')
T=$(api POST /types '{"volume_type": {"name": "limited"}}' | jget 'd["volume_type"]["id"]')
api GET "/qos-specs/$Q/associate?vol_type_id=$T" >/dev/null
make_volume() {
    local id
    id=$(api POST /volumes "{\"volume\": {\"size\": 4 $1}}" | jget 'd["volume"]["id"]')
    for _ in $(seq 300); do
        [ "$(api GET "/volumes/$id" | jget 'd["volume"]["status"]')" = available ] && break
        sleep 0.1
    done
    # Allocate the data so reads hit real extents, not holes.
    dd if=/dev/urandom of="$WORK/pool/volumes/$id.raw" bs=1M count=1024 conv=notrunc status=none
    api POST "/volumes/$id/action" '{"os-initialize_connection": {"connector": {"host": "bench"}}}' |
        jget '"nbd+unix:///" + d["connection_info"]["data"]["export_name"] + "?socket='"$WORK"'/nbd.sock"'
}
LIMITED=$(make_volume ", \"volume_type\": \"$T\"")
FREE=$(make_volume "")

run_fio() { # name uri rw bs
    fio --name="$1" --ioengine=nbd --uri="$2" --rw="$3" --bs="$4" --iodepth=16 --size=1g --ramp_time=2 \
        --runtime="$SECS" --time_based --output-format=json --output="$OUT/$1.json" >/dev/null
}
report() { # name
    python3 - "$OUT/$1.json" "$1" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]["read"]
print(f"{sys.argv[2]:<28} {j['iops']:>10.0f} IOPS {j['bw_bytes'] / 2**20:>9.1f} MiB/s")
PY
}
log "binary $BIN, $SECS s per run, load $(cut -d' ' -f1-3 /proc/loadavg)"
for row in "randread 4k" "read 1m"; do
    set -- $row
    run_fio "limited-$1-$2" "$LIMITED" "$1" "$2" &
    L=$!
    run_fio "beside-$1-$2" "$FREE" "$1" "$2"
    wait "$L"
    report "limited-$1-$2"
    report "beside-$1-$2"
    run_fio "alone-$1-$2" "$FREE" "$1" "$2"
    report "alone-$1-$2"
done
log "fio JSON in $OUT"
