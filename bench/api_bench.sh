#!/usr/bin/env bash
# API benchmark of cinderblock (issue 2, BENCHMARKS.md): release build, real daemon, 1,000 volumes,
# on SQLite and on PostgreSQL.
#
#   bench/api_bench.sh                 # both databases
#   bench/api_bench.sh sqlite          # one of them (sqlite | postgres)
#
# Environment (all optional):
#   CARGO_TARGET_DIR   build dir (default /var/tmp/cinderblock-target)
#   BENCH_VOLUMES      volumes in the project before the read measurements (1000)
#   BENCH_GET_SAMPLES  GET-one samples (10000, after 500 warm-up)
#   BENCH_DETAIL_SAMPLES detail?limit=100 samples (3000, after 200 warm-up)
#   BENCH_CREATES      sequential creates timed to `available` (200, after 10 warm-up)
#   BENCH_CONCURRENT   concurrent creates that must all reach `available` (200)
#   BENCH_SECONDS      duration of each throughput run (20)
#   BENCH_POLL_MS      pause between the polls of each concurrent create (50: 200 pollers with no
#                      pause would saturate the daemon with GETs and measure that instead)
#   BENCH_CLIENTS      clients of the mixed load (issue 17: 200)
#   BENCH_MIXED_SECONDS duration of the mixed load (60)
#   BENCH_MIXED_ONLY=1 run only the mixed load (no seed, no read or create phases)
#   BENCH_PG_URL       server URL without database (postgres://postgres@127.0.0.1:5432)
#   BENCH_OUT          directory for the raw logs and results (/var/tmp/cinderblock-bench/<date>)
#   BENCH_NO_BUILD=1   use the binaries already in $CARGO_TARGET_DIR/release
#   BENCH_REV          build this commit (git archive into a temp dir, with this tree's
#                      examples/api_bench.rs) instead of the work tree, e.g. BENCH_REV=HEAD
#                      while others are editing src/
#   BENCH_NICE         niceness of the daemon, the client, wrk and the PostgreSQL backends that
#                      serve the benchmark database (-10; 0 leaves priorities alone)
#   BENCH_WAIT_QUIET   1 (default): before each phase wait for other builds to end (see below)
#
# Needs: cargo, wrk (apt-get install wrk; installed here when missing), psql for PostgreSQL.
# Everything it makes (daemon, temp dirs, the PostgreSQL database) is removed on exit, also on
# failure or Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/cinderblock-target}
VOLUMES=${BENCH_VOLUMES:-1000}
GET_SAMPLES=${BENCH_GET_SAMPLES:-10000}
DETAIL_SAMPLES=${BENCH_DETAIL_SAMPLES:-3000}
CREATES=${BENCH_CREATES:-200}
CONCURRENT=${BENCH_CONCURRENT:-200}
SECONDS_RUN=${BENCH_SECONDS:-20}
POLL_MS=${BENCH_POLL_MS:-50}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
OUT=${BENCH_OUT:-/var/tmp/cinderblock-bench/$(date +%Y%m%d-%H%M%S)}
DBS=("$@")
[ ${#DBS[@]} -gt 0 ] || DBS=(sqlite postgres)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# ---------------------------------------------------------------------------------------------
# Clean-up of whatever the current run has made; runs on every exit path.
DAEMON_PID=""
WORKDIR=""
PG_DB=""
SRC_DIR=""
cleanup() {
    local rc=$?
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    DAEMON_PID=""
    if [ -n "$PG_DB" ]; then
        psql "$PG_URL/postgres" -qAtc "DROP DATABASE IF EXISTS \"$PG_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    PG_DB=""
    if [ -n "$WORKDIR" ]; then rm -rf "$WORKDIR"; fi
    WORKDIR=""
    return $rc
}
trap 'cleanup; [ -z "$SRC_DIR" ] || rm -rf "$SRC_DIR"' EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y wrk >/dev/null 2>&1 ||
    { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }; }
SRC=$ROOT
SRC_DESC="work tree at $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- src migrations Cargo.toml 2>/dev/null || echo ' + uncommitted changes in src/')"
if [ -n "${BENCH_REV:-}" ]; then
    SRC=$(mktemp -d /var/tmp/cbb-src.XXXXXX)
    SRC_DIR=$SRC
    git archive "$BENCH_REV" | tar -x -C "$SRC"
    mkdir -p "$SRC/examples"
    cp "$ROOT/examples/api_bench.rs" "$SRC/examples/"
    SRC_DESC="commit $(git rev-parse --short "$BENCH_REV") ($(git log -1 --format=%s "$BENCH_REV" | cut -c1-60))"
fi
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    log "cargo build --release --bin cinderblock --example api_bench (in $SRC)"
    (cd "$SRC" && cargo build --release --quiet --bin cinderblock --example api_bench)
fi
BIN=$CARGO_TARGET_DIR/release/cinderblock
CLIENT=$CARGO_TARGET_DIR/release/examples/api_bench
[ -x "$BIN" ] && [ -x "$CLIENT" ] || die "missing $BIN or $CLIENT"
mkdir -p "$OUT"

# On a shared machine other sessions compile and run tests beside us: run everything of ours at
# a higher priority (children inherit it), so the figures approach those of a dedicated machine.
NICE=${BENCH_NICE:--10}
if [ "$NICE" != 0 ]; then renice -n "$NICE" -p $$ >/dev/null || log "cannot renice to $NICE"; fi
# The PostgreSQL backends serving our database (the daemon's pool opens them lazily).
renice_pg() {
    [ "$NICE" != 0 ] && [ -n "$PG_DB" ] || return 0
    local pid
    for pid in $(psql "$PG_URL/postgres" -qAtc "SELECT pid FROM pg_stat_activity WHERE datname = '$PG_DB'"); do
        renice -n "$NICE" -p "$pid" >/dev/null 2>&1 || true
    done
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "source: $SRC_DESC"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "kernel: $(uname -sr)"
    echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "niceness: ${BENCH_NICE:--10} (daemon, client, wrk, PostgreSQL backends of the benchmark database)"
    echo "postgres: $(psql "$PG_URL/postgres" -qAtc 'SHOW server_version' 2>/dev/null || echo n/a)"
} | tee "$OUT/machine.txt" >&2

# wrk script: random GET paths out of the project's volumes.
cat >"$OUT/get_random.lua" <<'EOF'
local paths = {}
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % 1000)
end
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
EOF

# result KEY VALUE: one line in the results of the current database
result() { echo "RESULT $1=$2" | tee -a "$RES" >&2; }

# CPU accounting around a phase (jiffies): whole machine from /proc/stat, the daemon from its
# /proc/PID/stat, waited-for children (client, wrk) from the `times` builtin.
HZ=$(getconf CLK_TCK)
NPROC=$(nproc)
sys_jiffies() { awk '/^cpu / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
daemon_jiffies() { check_daemon; awk '{print $14+$15}' "/proc/$DAEMON_PID/stat"; }
# Die with the daemon's exit status (and its log) if it is gone.
check_daemon() {
    kill -0 "$DAEMON_PID" 2>/dev/null && return 0
    local rc=0
    wait "$DAEMON_PID" || rc=$?
    DAEMON_PID=""
    die "the daemon exited with status $rc$([ $rc -gt 128 ] && echo " (signal $((rc - 128)))"): $(tail -5 "$OUT/$db.daemon.log")"
}
# The PostgreSQL backends serving the benchmark database (not our children: counted apart).
pg_pids() {
    [ -n "$PG_DB" ] || return 0
    psql "$PG_URL/postgres" -qAtc "SELECT pid FROM pg_stat_activity WHERE datname = '$PG_DB'" 2>/dev/null || true
}
pg_jiffies() {
    local pid t=0 j
    for pid in $PG_PIDS; do
        j=$(awk '{print $14+$15}' "/proc/$pid/stat" 2>/dev/null) && t=$((t + j))
    done
    echo $t
}
# `times` must run in this shell (a $(...) subshell has no children of its own).
child_jiffies() {
    times >"$WORKDIR/times"
    sed -n 2p "$WORKDIR/times" | awk -v hz="$HZ" '{
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
        printf "%d", t * hz }'
}
cpu_mark() {
    read -r M_BUSY M_TOTAL < <(sys_jiffies)
    M_DAEMON=$(daemon_jiffies)
    PG_PIDS=$(pg_pids)
    M_PG=$(pg_jiffies)
    child_jiffies >"$WORKDIR/child"; M_CHILD=$(cat "$WORKDIR/child")
}
cpu_report() {
    local busy total d c pg
    read -r busy total < <(sys_jiffies)
    d=$(daemon_jiffies)
    pg=$(pg_jiffies)
    child_jiffies >"$WORKDIR/child"; c=$(cat "$WORKDIR/child")
    local line
    line=$(awk -v b=$((busy - M_BUSY)) -v t=$((total - M_TOTAL)) -v d=$((d - M_DAEMON)) -v c=$((c - M_CHILD)) \
        -v pg=$((pg - M_PG)) -v n="$NPROC" '
        BEGIN { if (t <= 0) t = 1; s = n / t
                printf "daemon=%.2f postgres=%.2f client=%.2f other=%.2f", d * s, pg * s, c * s, (b - d - pg - c) * s }')
    log "[$db] cores busy during $1: $line; daemon RSS after: $(awk '/^VmRSS/ {print $2, $3}' /proc/$DAEMON_PID/status)"
    echo "RESULT rss_after_$1_kb=$(awk '/^VmRSS/ {print $2}' /proc/$DAEMON_PID/status)" >>"$RES"
    echo "RESULT cpu_$1=${line// /,}" >>"$RES"
}

# With BENCH_WAIT_QUIET=1 (default), wait before each phase until no compiler or test run of
# another session has been seen for 5 s (at most BENCH_QUIET_MAX s, 60 by default), so the
# figures are not those of a machine busy compiling.
BUSY_RE='^(rustc|cargo|cc1|cc1plus|ld|ld.lld|collect2|clippy-driver|rust-analyzer|.*-[0-9a-f]{4,})$'
busy_procs() {
    # compilers and test binaries, and daemons other than ours (other sessions' test servers)
    ps -eo comm= | awk -v re="$BUSY_RE" '$1 ~ re || $1 == "cinderblock" { n++ } END { print n + 0 }'
}
quiet_wait() {
    [ "${BENCH_WAIT_QUIET:-1}" = 1 ] || return 0
    local waited=0 calm=0
    while [ $calm -lt 5 ] && [ $waited -lt "${BENCH_QUIET_MAX:-60}" ]; do
        if [ "$(busy_procs)" -gt 0 ]; then calm=0; else calm=$((calm + 1)); fi
        sleep 1; waited=$((waited + 1))
    done
    [ $waited -le 5 ] || log "waited ${waited}s for other builds to finish"
}

run_one() {
    local db=$1
    RES=$OUT/$db.results
    : >"$RES"
    # Neutral names for the directory and the daemon's executable: on a shared machine other
    # sessions' clean-ups that stop stray daemons by name (`pkill cinderblock`) must not stop ours.
    WORKDIR=$(mktemp -d /var/tmp/cbb.XXXXXX)
    mkdir -p "$WORKDIR/pool"
    cp "$BIN" "$WORKDIR/cbbd"
    local url
    case "$db" in
        sqlite) url="sqlite://$WORKDIR/cinderblock.db" ;;
        postgres)
            PG_DB="cinderblock_bench_$$_$RANDOM"
            psql "$PG_URL/postgres" -qAtc "CREATE DATABASE \"$PG_DB\"" >/dev/null
            url="$PG_URL/$PG_DB"
            ;;
        *) die "unknown database $db (sqlite | postgres)" ;;
    esac
    cat >"$WORKDIR/config.toml" <<EOF
listen = "127.0.0.1:0"
log = "warn"

[database]
url = "$url"

[[pools]]
name = "default"
path = "$WORKDIR/pool"
availability_zone = "nova"
volume_types = ["__DEFAULT__", "SSD", "SAS", "SATA"]
max_over_subscription_ratio = 1000.0
EOF
    log "[$db] starting the daemon ($url)"
    "$WORKDIR/cbbd" serve --config "$WORKDIR/config.toml" >"$WORKDIR/stdout" 2>"$OUT/$db.daemon.log" &
    DAEMON_PID=$!
    local base=""
    for _ in $(seq 300); do
        base=$(sed -n 's/^cinderblock listening on //p' "$WORKDIR/stdout")
        [ -n "$base" ] && break
        kill -0 "$DAEMON_PID" 2>/dev/null || die "daemon exited: $(tail -5 "$OUT/$db.daemon.log")"
        sleep 0.1
    done
    [ -n "$base" ] || die "daemon did not print its address"
    local project
    project=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    local C=("$CLIENT")
    local A=(--url "$base" --project "$project")
    result rss_start_kb "$(awk '/^VmRSS/ {print $2}' /proc/$DAEMON_PID/status)"

    # phase NAME CMD...: run a client phase, log its output, keep its RESULT lines, and note how
    # busy the machine was meanwhile: cores used by the daemon, by our client (or wrk), by
    # the PostgreSQL backends of our database, and everything else (other sessions' builds and tests
    # on a shared machine: a figure measured with other > ~0.3 cores is suspect).
    phase() {
        local name=$1; shift
        quiet_wait
        renice_pg
        local k=${name//-/_} rc
        echo "RESULT load_before_$k=$(load | tr ' ' '/')" >>"$RES"
        log "[$db] $name (load average before: $(load))"
        cpu_mark
        set +e
        "$@" 2>&1 | tee "$OUT/$db.$name.log" | grep -v '^RESULT' >&2
        rc=${PIPESTATUS[0]}
        set -e
        cpu_report "$k"
        grep '^RESULT' "$OUT/$db.$name.log" >>"$RES" || true
        [ "$rc" = 0 ] || die "[$db] $name failed (exit $rc)"
    }

    # The mixed load (issue 17): create / snapshot / clone / extend / attach / delete / list from
    # BENCH_CLIENTS clients; the client fails on any 5xx or stuck status, and everything it made
    # must be gone afterwards: the pool holds exactly the $1 files it held before.
    mixed_phase() {
        phase mixed-load "${C[@]}" mixed-load "${A[@]}" --clients "${BENCH_CLIENTS:-200}" \
            --seconds "${BENCH_MIXED_SECONDS:-60}"
        local now
        now=$(find "$WORKDIR/pool" -type f | wc -l)
        [ "$now" = "$1" ] || die "[$db] $now files in the pool after the mixed load, expected $1"
    }
    if [ "${BENCH_MIXED_ONLY:-0}" = 1 ]; then
        mixed_phase 0
        cleanup
        return
    fi
    phase seed "${C[@]}" seed "${A[@]}" --count "$VOLUMES"
    phase get-latency "${C[@]}" get-latency "${A[@]}" --samples "$GET_SAMPLES"
    phase detail-latency "${C[@]}" detail-latency "${A[@]}" --samples "$DETAIL_SAMPLES"
    "${C[@]}" paths "${A[@]}" --out "$WORKDIR/paths.txt" >/dev/null

    wrk -t2 -c8 -d2s -s "$OUT/get_random.lua" "$base" -- "$WORKDIR/paths.txt" >/dev/null # warm-up
    phase wrk wrk -t2 -c8 -d"${SECONDS_RUN}s" --latency -s "$OUT/get_random.lua" "$base" -- "$WORKDIR/paths.txt"
    result wrk_rps "$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$OUT/$db.wrk.log")"
    if grep -q 'Non-2xx\|Socket errors' "$OUT/$db.wrk.log"; then die "[$db] wrk saw errors"; fi
    phase throughput "${C[@]}" throughput "${A[@]}" --conns 8 --seconds "$SECONDS_RUN"

    phase create-latency "${C[@]}" create-latency "${A[@]}" --count "$CREATES"
    phase concurrent-create "${C[@]}" concurrent-create "${A[@]}" --count "$CONCURRENT" --poll-ms "$POLL_MS"

    # Every volume the database lists must be one sparse file in the pool.
    local files
    files=$(find "$WORKDIR/pool" -type f | wc -l)
    result pool_files "$files"
    [ "$files" = $((VOLUMES + CREATES + 10 + CONCURRENT)) ] ||
        die "[$db] $files files in the pool, expected $((VOLUMES + CREATES + 10 + CONCURRENT))"
    result pool_allocated_kb "$(du -sk "$WORKDIR/pool" | cut -f1)"
    mixed_phase "$files"

    log "[$db] idle 10 s, then RSS"
    sleep 10
    result rss_idle_kb "$(awk '/^VmRSS/ {print $2}' /proc/$DAEMON_PID/status)"
    result rss_peak_kb "$(awk '/^VmHWM/ {print $2}' /proc/$DAEMON_PID/status)"
    result threads "$(awk '/^Threads/ {print $2}' /proc/$DAEMON_PID/status)"
    cleanup
}

for db in "${DBS[@]}"; do run_one "$db"; done

# ---------------------------------------------------------------------------------------------
# Summary: one column per database.
get() { sed -n "s/^RESULT $2=//p" "$OUT/$1.results" 2>/dev/null | tail -1; }
kb2mb() { [ -n "$1" ] && awk -v k="$1" 'BEGIN {printf "%.1f MB", k/1024}'; }
{
    printf '\n| figure | %s |\n|---|%s\n' "$(printf '%s | ' "${DBS[@]}" | sed 's/ | $//')" "$(printf -- '---|%.0s' "${DBS[@]}")"
    row() {
        local label=$1 fmt=$2; shift 2
        printf '| %s |' "$label"
        for db in "${DBS[@]}"; do printf " $fmt |" "$("$@" "$db")"; done
        echo
    }
    ms() { local db=$1; echo "$(get "$db" "${K}_median_ms") / $(get "$db" "${K}_p99_ms")"; }
    K=get; row 'GET volume median / p99 (ms)' '%s' ms
    K=detail; row 'GET detail?limit=100 median / p99 (ms)' '%s' ms
    K=create_available; row 'create → available median / p99 (ms)' '%s' ms
    K=create_post; row 'POST create → 202 median / p99 (ms)' '%s' ms
    g() { get "$1" "$K"; }
    K=wrk_rps; row 'GET/s, wrk -t2 -c8' '%s' g
    K=own_rps; row 'GET/s, api_bench 8 connections' '%s' g
    c() { echo "$(get "$1" concurrent_failed) failed of $(get "$1" concurrent_creates), $(get "$1" concurrent_wall_s) s"; }
    row "$CONCURRENT concurrent creates" '%s' c
    K=concurrent_available; row 'concurrent create → available median / p99 (ms)' '%s' ms
    K=batch100_to_success; row 'EVS batch of 100 → SUCCESS median (ms)' '%s' ms
    K=mixed_rps; row "mixed load, ${BENCH_CLIENTS:-200} clients: requests/s" '%s' g
    K=mixed_5xx; row 'mixed load: 5xx responses' '%s' g
    K=mixed_stuck; row 'mixed load: stuck resources' '%s' g
    for op in list create snapshot clone extend attach detach delete; do
        K=mixed_$op; row "mixed $op request median / p99 (ms)" '%s' ms
    done
    for op in create snapshot clone extend delete; do
        K=mixed_${op}_settle; row "mixed $op to done median / p99 (ms)" '%s' ms
    done
    r() { kb2mb "$(get "$1" "$K")"; }
    K=rss_start_kb; row 'RSS at start' '%s' r
    K=rss_idle_kb; row 'RSS idle after load' '%s' r
    K=rss_peak_kb; row 'RSS peak (VmHWM)' '%s' r
} | tee "$OUT/summary.md"
log "raw logs and results in $OUT"
