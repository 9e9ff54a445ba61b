#!/usr/bin/env bash
# NBD server benchmark: cinderblock's own server (examples/nbd_serve) vs `nbdkit file` vs
# `qemu-nbd -e 8`, on one raw file (4 GiB by default, random data, warm page cache), over a
# unix socket and over TCP on 127.0.0.1.
#
#   bench/nbd_bench.sh                  # everything, prints a markdown table
#   SIZE_GIB=1 RUNTIME=5 REPEAT=1 bench/nbd_bench.sh    # quick run
#
# Rows: fio's nbd engine 4k random read/write at QD32 (IOPS), 1 MiB sequential read/write at
# QD8 (MiB/s), nbdcopy 4 GiB export -> null: and file -> export (MiB/s). Each cell is the median
# of REPEAT runs; for every measurement the three servers run back to back (ours, nbdkit,
# qemu-nbd), so background load on a shared machine hits them alike.
#
# Transport `tls` is TCP with forced TLS (a throwaway CA and server certificate made with
# openssl under $BENCH_DIR/pki; clients use no certificate): ours with `--tls-dir`, nbdkit with
# `--tls=require`, qemu-nbd with `tls-creds-x509`; the clients connect to `nbds://`. Add it with
# TRANSPORTS="unix tcp tls".
#
# Needs: fio, nbdcopy (libnbd-bin), nbdkit, qemu-nbd (qemu-utils); installs the missing ones
# when run as root. Environment:
#   BENCH_DIR   work dir (default /var/tmp/cinderblock-nbd-bench): the image and its source copy
#   SIZE_GIB    image size (default 4)     RUNTIME  seconds per fio run (default 10)
#   REPEAT      runs per cell (default 3)  SERVERS  subset, e.g. "cinderblock nbdkit"
#   TRANSPORTS  "unix tcp" (default), or with "tls"       TESTS    subset of: randread randwrite read write copyread copywrite
#   CARGO_TARGET_DIR (default /var/tmp/cinderblock-target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/cinderblock-nbd-bench}
SIZE_GIB=${SIZE_GIB:-4}
RUNTIME=${RUNTIME:-10}
REPEAT=${REPEAT:-3}
SERVERS=${SERVERS:-"cinderblock nbdkit qemu-nbd"}
TRANSPORTS=${TRANSPORTS:-"unix tcp"}
TESTS=${TESTS:-"randread randwrite read write copyread copywrite"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/cinderblock-target}
PORT=10899

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

need() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    [ "$(id -u)" -eq 0 ] || die "$cmd missing: install the Debian package $pkg"
    log "installing $pkg"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null; }
}
need fio fio
need nbdcopy libnbd-bin
need nbdkit nbdkit
need qemu-nbd qemu-utils
case " $TRANSPORTS " in *" tls "*) need openssl openssl ;; esac

log "building examples/nbd_serve (release)"
(cd "$ROOT" && cargo build --release --example nbd_serve >&2)
SERVE="$CARGO_TARGET_DIR/release/examples/nbd_serve"

mkdir -p "$BENCH_DIR"
IMG="$BENCH_DIR/vol.raw"
SRC="$BENCH_DIR/src.raw"
SOCK="$BENCH_DIR/nbd.sock"
BYTES=$((SIZE_GIB << 30))
for f in "$SRC" "$IMG"; do
    if [ ! -f "$f" ] || [ "$(stat -c %s "$f")" -ne "$BYTES" ]; then
        log "writing $SIZE_GIB GiB of random data to $f"
        head -c "$BYTES" /dev/urandom >"$f.tmp" && mv "$f.tmp" "$f"
    fi
done
PKI="$BENCH_DIR/pki"
if [[ " $TRANSPORTS " == *" tls "* ]] && [ ! -f "$PKI/server-cert.pem" ]; then
    log "making a throwaway CA and server certificate in $PKI"
    mkdir -p "$PKI"
    (
        cd "$PKI"
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -keyout ca-key.pem -out ca-cert.pem \
            -subj "/CN=bench CA" -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
        printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
        openssl req -newkey rsa:2048 -nodes -keyout server-key.pem -out server.csr -subj /CN=localhost 2>/dev/null
        openssl x509 -req -in server.csr -CA ca-cert.pem -CAkey ca-key.pem -CAcreateserial -days 30 \
            -extfile server.ext -out server-cert.pem 2>/dev/null
    )
fi

log "warming the page cache"
cat "$IMG" "$SRC" >/dev/null

SERVER_PID=
stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=
    fi
    rm -f "$SOCK"
}
trap stop_server EXIT

# start_server NAME TRANSPORT: start it in the background and wait until it accepts.
start_server() {
    local name=$1 transport=$2
    rm -f "$SOCK"
    case "$name/$transport" in
        cinderblock/unix) "$SERVE" "$IMG" --unix "$SOCK" >/dev/null 2>&1 & ;;
        cinderblock/tcp) "$SERVE" "$IMG" --tcp "127.0.0.1:$PORT" >/dev/null 2>&1 & ;;
        cinderblock/tls) "$SERVE" "$IMG" --tcp "127.0.0.1:$PORT" --tls-dir "$PKI" >/dev/null 2>&1 & ;;
        nbdkit/tls) nbdkit -f -i 127.0.0.1 -p "$PORT" --tls=require --tls-certificates="$PKI" file "$IMG" >/dev/null 2>&1 & ;;
        qemu-nbd/tls) qemu-nbd -f raw -e 8 -t -b 127.0.0.1 -p "$PORT" \
            --object "tls-creds-x509,id=tls0,dir=$PKI,endpoint=server" --tls-creds tls0 "$IMG" >/dev/null 2>&1 & ;;
        nbdkit/unix) nbdkit -f -U "$SOCK" file "$IMG" >/dev/null 2>&1 & ;;
        nbdkit/tcp) nbdkit -f -i 127.0.0.1 -p "$PORT" file "$IMG" >/dev/null 2>&1 & ;;
        qemu-nbd/unix) qemu-nbd -f raw -e 8 -t -k "$SOCK" "$IMG" >/dev/null 2>&1 & ;;
        qemu-nbd/tcp) qemu-nbd -f raw -e 8 -t -b 127.0.0.1 -p "$PORT" "$IMG" >/dev/null 2>&1 & ;;
        *) die "unknown server $name/$transport" ;;
    esac
    SERVER_PID=$!
    local i
    for i in $(seq 1 100); do
        if nbdinfo --size "$(uri "$transport")" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    die "$name did not start on $transport"
}

uri() {
    case "$1" in
        unix) echo "nbd+unix:///?socket=$SOCK" ;;
        tcp) echo "nbd://127.0.0.1:$PORT/" ;;
        tls) echo "nbds://127.0.0.1:$PORT/?tls-certificates=$PKI" ;;
    esac
}

# fio_run URI RW BS QD -> prints IOPS (4k) or MiB/s (1M)
fio_run() {
    local uri=$1 rw=$2 bs=$3 qd=$4
    fio --name=bench --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$qd" \
        --size="${SIZE_GIB}G" --time_based --runtime="$RUNTIME" --ramp_time=1 --norandommap \
        --randrepeat=0 --output-format=json 2>/dev/null |
        python3 -c '
import json, sys
s = sys.stdin.read(); j = json.loads(s[s.index("{"):])["jobs"][0]
iops = j["read"]["iops"] + j["write"]["iops"]; bw = (j["read"]["bw"] + j["write"]["bw"]) / 1024
print(int(iops) if sys.argv[1] == "4k" else int(bw))' "$bs"
}

# copy_run URI DIRECTION -> prints MiB/s
copy_run() {
    local uri=$1 dir=$2 t0 t1
    t0=$(date +%s.%N)
    if [ "$dir" = read ]; then
        nbdcopy "$uri" null: >/dev/null
    else
        nbdcopy "$SRC" "$uri" >/dev/null
    fi
    t1=$(date +%s.%N)
    python3 -c "print(int($BYTES / 1048576 / ($t1 - $t0)))"
}

measure() {
    local test=$1 uri=$2
    case "$test" in
        randread) fio_run "$uri" randread 4k 32 ;;
        randwrite) fio_run "$uri" randwrite 4k 32 ;;
        read) fio_run "$uri" read 1M 8 ;;
        write) fio_run "$uri" write 1M 8 ;;
        copyread) copy_run "$uri" read ;;
        copywrite) copy_run "$uri" write ;;
    esac
}

label() {
    case "$1" in
        randread) echo "4k random read QD32 (IOPS)" ;;
        randwrite) echo "4k random write QD32 (IOPS)" ;;
        read) echo "1 MiB sequential read QD8 (MiB/s)" ;;
        write) echo "1 MiB sequential write QD8 (MiB/s)" ;;
        copyread) echo "nbdcopy ${SIZE_GIB} GiB export → null: (MiB/s)" ;;
        copywrite) echo "nbdcopy ${SIZE_GIB} GiB file → export (MiB/s)" ;;
    esac
}

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A RESULT
for test in $TESTS; do
    for transport in $TRANSPORTS; do
        declare -A runs=()
        for rep in $(seq 1 "$REPEAT"); do
            for server in $SERVERS; do
                start_server "$server" "$transport"
                v=$(measure "$test" "$(uri "$transport")")
                stop_server
                runs[$server]="${runs[$server]:-} $v"
                log "$test $transport $server run $rep: $v"
            done
        done
        for server in $SERVERS; do
            RESULT[$test/$transport/$server]=$(echo "${runs[$server]}" | median)
        done
        unset runs
    done
done

echo
echo "Machine: $(nproc) vCPU, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), $(df -T "$BENCH_DIR" | awk 'NR==2 {print $2}') on $(df "$BENCH_DIR" | awk 'NR==2 {print $1}'); load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "Versions: $(nbdkit --version 2>/dev/null | head -1), $(qemu-nbd --version | head -1), $(fio --version), $(nbdcopy --version | head -1)"
echo "Median of $REPEAT runs, ${RUNTIME}s per fio run, ${SIZE_GIB} GiB image in page cache."
echo
header="| test | transport |"
sep="|---|---|"
for server in $SERVERS; do
    header="$header $server |"
    sep="$sep---:|"
done
echo "$header"
echo "$sep"
for test in $TESTS; do
    for transport in $TRANSPORTS; do
        row="| $(label "$test") | $transport |"
        for server in $SERVERS; do
            row="$row ${RESULT[$test/$transport/$server]} |"
        done
        echo "$row"
    done
done
