#!/usr/bin/env bash
# NBD siege (issue 17, BENCHMARKS.md): a well-behaved client's throughput against cinderblock's
# NBD server alone, then while 1,000 hostile connections attack it (idle after GO, partial 32 MiB
# writes, stalled handshakes, NBD_OPT_LIST probes, readers that never drain), with the server's
# RSS and descriptors sampled meanwhile. The same run against nbdkit and qemu-nbd as references
# (their own defaults; qemu-nbd with -e 1024 so it accepts the connections at all).
#
#   bench/nbd_siege.sh
#
# Environment: SIEGE_ATTACKERS (1000), SIEGE_SECONDS (20), SIEGE_BASELINE (10),
# SIEGE_SERVERS ("cinderblock nbdkit qemu-nbd"), BENCH_NO_BUILD=1 (use the release binaries in
# $CARGO_TARGET_DIR), BENCH_OUT (/var/tmp/cinderblock-bench/siege).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/cinderblock-target}
ATTACKERS=${SIEGE_ATTACKERS:-1000}
SECONDS_RUN=${SIEGE_SECONDS:-20}
BASELINE=${SIEGE_BASELINE:-10}
SERVERS=${SIEGE_SERVERS:-cinderblock nbdkit qemu-nbd}
OUT=${BENCH_OUT:-/var/tmp/cinderblock-bench/siege}
PORT=10899
SIZE=$((1 << 30))
log() { echo "==> $*" >&2; }
die() { echo "ERROR: $*" >&2; exit 1; }
mkdir -p "$OUT"

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "cargo build --release --example nbd_serve --example nbd_siege"
    (cd "$ROOT" && cargo build --release --quiet --example nbd_serve --example nbd_siege)
fi
SERVE=$CARGO_TARGET_DIR/release/examples/nbd_serve
SIEGE=$CARGO_TARGET_DIR/release/examples/nbd_siege
[ -x "$SERVE" ] && [ -x "$SIEGE" ] || die "missing $SERVE or $SIEGE"

IMG=$OUT/export.img
if [ ! -f "$IMG" ] || [ "$(stat -c %s "$IMG")" -ne "$SIZE" ]; then
    log "writing 1 GiB of random data to $IMG"
    head -c "$SIZE" /dev/urandom >"$IMG.tmp" && mv "$IMG.tmp" "$IMG"
fi
cat "$IMG" >/dev/null
# The attackers' own exports (one per source address, 1 GiB sparse files: their reads hit
# holes, so the server's work per attack request is small and memory is what is tested).
ADDRESSES=20
ALSO=()
for n in $(seq 0 $((ADDRESSES - 1))); do
    truncate -s 1G "$OUT/tenant$n.img"
    ALSO+=(--also "tenant$n=$OUT/tenant$n.img")
done

# Room for 1,000 attackers, the server's own descriptors and this shell's children.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge 4096 ] || die "open files limit $(ulimit -n) is below 4096"

SERVER_PID=
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
}
trap stop_server EXIT

start_server() {
    case "$1" in
        cinderblock) "$SERVE" "$IMG" --tcp "127.0.0.1:$PORT" "${ALSO[@]}" >"$OUT/$1.log" 2>&1 & ;;
        nbdkit) nbdkit -f -i 0.0.0.0 -p "$PORT" file "$IMG" >"$OUT/$1.log" 2>&1 & ;;
        qemu-nbd) qemu-nbd -f raw -e 1024 -t -b 0.0.0.0 -p "$PORT" "$IMG" >"$OUT/$1.log" 2>&1 & ;;
        *) die "unknown server $1" ;;
    esac
    SERVER_PID=$!
    local i
    for i in $(seq 1 100); do
        if nbdinfo --size "nbd://127.0.0.1:$PORT/" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    die "$1 did not start"
}

for s in $SERVERS; do
    if [ "$s" != cinderblock ] && ! command -v "$s" >/dev/null; then
        log "skipping $s (not installed)"
        continue
    fi
    log "siege of $s: $ATTACKERS attackers, ${BASELINE}s baseline, ${SECONDS_RUN}s siege"
    start_server "$s"
    rc=0
    "$SIEGE" --tcp "127.0.0.1:$PORT" --pid "$SERVER_PID" --attackers "$ATTACKERS" \
        --addresses "$ADDRESSES" $( [ "$s" = cinderblock ] && echo --attack-prefix tenant ) \
        --baseline "$BASELINE" --siege "$SECONDS_RUN" --size "$SIZE" >"$OUT/$s.result" || rc=$?
    stop_server
    echo "exit=$rc" >>"$OUT/$s.result"
    sed "s/^/$s: /" "$OUT/$s.result"
done
