#!/usr/bin/env bash
# Image benchmark (issue 13): volumes from a 2 GiB-virtual qcow2 image and volumes uploaded as
# images, on a reflink pool (XFS on a loop device), each next to what qemu-img alone takes for
# the same data in the same run.
#
#   bench/image_bench.sh [BINARY]     (default: $CARGO_TARGET_DIR/release/cinderblock; root)
#
# Rows:
#   - upload of the qcow2 through the Glance API (PUT /image/v2/images/{id}/file);
#   - first volume from the image: POST /volumes with imageRef → `available` (the image is
#     converted once to raw into the pool's image cache), beside `qemu-img convert -f qcow2 -O raw`
#     of the same file onto the same filesystem;
#   - second and third volumes from it (cache hit: a reflink of the cached raw file);
#   - os-volume_upload_image of a 10 GiB volume holding 2 GiB of data, as raw and as qcow2 (to
#     `active`), beside `qemu-img convert` of the same volume file to each format.
# Times are wall-clock, polled every 2 ms over one kept-alive HTTP connection
# (bench/image_bench.py). Each row is run BENCH_RUNS times (default 3); the median is printed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/cinderblock-target}
BIN=${1:-$CARGO_TARGET_DIR/release/cinderblock}
RUNS=${BENCH_RUNS:-3}
log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (an XFS image on a loop device)"
[ -x "$BIN" ] || die "no binary at $BIN (cargo build --release)"
for t in qemu-img mkfs.xfs losetup mount python3 curl; do command -v "$t" >/dev/null || die "$t is missing"; done

WORK=$(mktemp -d /var/tmp/cinderblock-imgbench-XXXXXX)
PID=""
LOOP=""
cleanup() {
    [ -z "$PID" ] || { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
    mountpoint -q "$WORK/mnt" && umount "$WORK/mnt"
    [ -z "$LOOP" ] || losetup -d "$LOOP" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# The pool: XFS with reflink on a 40 GiB sparse file on a loop device.
truncate -s 40G "$WORK/xfs.img"
LOOP=$(losetup --find --show "$WORK/xfs.img")
mkfs.xfs -q -f -m reflink=1 "$LOOP"
mkdir -p "$WORK/mnt"
mount "$LOOP" "$WORK/mnt"
mkdir -p "$WORK/mnt/pool" "$WORK/mnt/scratch"

# The image: 2 GiB virtual, 768 MiB of random data in three runs with holes between, as qcow2.
log "building a 2 GiB-virtual qcow2 with 768 MiB of data"
truncate -s 2G "$WORK/mnt/scratch/src.raw"
for off in 0 700 1500; do
    dd if=/dev/urandom of="$WORK/mnt/scratch/src.raw" bs=1M seek="$off" count=256 conv=notrunc status=none
done
qemu-img convert -f raw -O qcow2 "$WORK/mnt/scratch/src.raw" "$WORK/mnt/scratch/image.qcow2"
rm -f "$WORK/mnt/scratch/src.raw"

cat >"$WORK/config.toml" <<EOF
listen = "127.0.0.1:0"
log = "warn"
[database]
url = "sqlite://$WORK/db.sqlite"
[exports]
nbd_listen = "127.0.0.1:0"
[[pools]]
name = "default"
path = "$WORK/mnt/pool"
availability_zone = "nova"
volume_types = ["__DEFAULT__"]
EOF
env -i PATH="$PATH" HOME="$WORK" "$BIN" serve --config "$WORK/config.toml" >"$WORK/stdout" 2>"$WORK/daemon.log" &
PID=$!
BASE=""
for _ in $(seq 300); do
    BASE=$(sed -n 's/^cinderblock listening on //p' "$WORK/stdout" | head -n1 | awk '{print $1}')
    [ -n "$BASE" ] && break
    kill -0 "$PID" 2>/dev/null || die "the daemon exited: $(tail -5 "$WORK/daemon.log")"
    sleep 0.1
done
[ -n "$BASE" ] || die "the daemon printed no address"

python3 "$ROOT/bench/image_bench.py" "$BASE" "$WORK/mnt" "$RUNS"
