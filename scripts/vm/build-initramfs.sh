#!/bin/bash
# Build the LVM test VM (tests/lvm_vm.rs): fetch, once and cached under $CACHE (outside the
# clone), a Debian 6.1 kernel (linux-image-6.1.0-*-amd64, resolved at run time from
# linux-image-amd64), busybox-static, lvm2 and thin-provisioning-tools with `apt-get download`,
# and QEMU 10 from bookworm-backports (bookworm's QEMU 7.2 would replace the image's qemu-utils
# 10) through a throw-away apt configuration; extract them with `dpkg-deb -x`. System apt
# configuration is never changed. Then build an initramfs carrying busybox, lvm, dmsetup,
# pdata_tools, the dm/virtio modules in load order, and the test binary with its ldd libraries.
#
# Usage: build-initramfs.sh TEST_BINARY OUT_DIR [DAEMON_BINARY]
#        build-initramfs.sh --fetch        (scripts/test.sh: only fill the cache)
# With DAEMON_BINARY, the initramfs also carries the daemon (/cinderblock) and the host's
# qemu-io with their libraries, and /init brings up the loopback interface, so the guest can run
# the daemon on an LVM pool and write and read its volumes over its NBD server.
# Prints KEY=VALUE lines: KERNEL, INITRD, QEMU, QEMU_LIB (LD_LIBRARY_PATH), QEMU_DATA (-L dirs).
set -euo pipefail
BIN=$1
OUT=${2:-}
DAEMON=${3:-}
CACHE=${CINDERBLOCK_VM_CACHE:-/var/tmp/cinderblock-vm}
mkdir -p "$CACHE/gdebs" "$CACHE/debs" "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial"
[ "$BIN" = "--fetch" ] || mkdir -p "$OUT"
exec 9>"$CACHE/lock"
flock 9

note() { echo "build-initramfs: $*" >&2; }

# --- guest ingredients (configured sources) ---
if ! ls "$CACHE"/gdebs/linux-image-6.1.0-*-amd64_*.deb >/dev/null 2>&1; then
    KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6\.1\.0-[0-9]+-amd64$/{print $2; exit}')
    if [ -z "$KPKG" ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-6\.1\.0-[0-9]+-amd64$/{print $2; exit}')
    fi
    note "downloading $KPKG busybox-static lvm2 thin-provisioning-tools"
    (cd "$CACHE/gdebs" && apt-get download -q "$KPKG" busybox-static lvm2 thin-provisioning-tools \
        libdevmapper-event1.02.1 libedit2 libaio1 >&2)
fi
G=$CACHE/guest
if [ ! -d "$G/boot" ]; then
    rm -rf "$G.tmp"; mkdir -p "$G.tmp"
    for d in "$CACHE"/gdebs/*.deb; do dpkg-deb -x "$d" "$G.tmp"; done
    rm -rf "$G"; mv "$G.tmp" "$G"
fi

# --- QEMU 10 from backports, extracted (throw-away apt config built from the system's mirror) ---
Q=$CACHE/qemu
if [ -x /usr/bin/qemu-system-x86_64 ] && /usr/bin/qemu-system-x86_64 --version | grep -q 'version [1-9][0-9]\.'; then
    QEMU=/usr/bin/qemu-system-x86_64; QEMU_LIB=; QEMU_DATA=
else
    if [ ! -x "$Q/usr/bin/qemu-system-x86_64" ]; then
        URI=$(awk '/^URIs:/{u=$2} /^Suites:/{for(i=2;i<=NF;i++) if($i=="bookworm"){print u; exit}}' \
            /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
        [ -n "$URI" ] || URI=$(awk '$1=="deb" && $3=="bookworm"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
        [ -n "$URI" ] || { note "no Debian bookworm mirror found in the apt sources"; exit 1; }
        K=/usr/share/keyrings/debian-archive-keyring.gpg
        printf 'deb [signed-by=%s] %s bookworm main\ndeb [signed-by=%s] %s bookworm-backports main\n' \
            "$K" "$URI" "$K" "$URI" >"$CACHE/apt/sources.list"
        A=(-o "Dir::Etc::sourcelist=$CACHE/apt/sources.list" -o Dir::Etc::sourceparts=/nonexistent
           -o "Dir::State::Lists=$CACHE/apt/lists" -o "Dir::Cache=$CACHE/apt/cache")
        apt-get "${A[@]}" update -qq >&2
        note "downloading qemu-system-x86 from bookworm-backports"
        (cd "$CACHE/debs" && apt-get "${A[@]}" download -q qemu-system-x86/bookworm-backports \
            qemu-system-common/bookworm-backports qemu-system-data/bookworm-backports \
            libcapstone4 libfdt1 libslirp0 libvdeplug2 seabios ipxe-qemu libpmem1 liburing2 libfuse3-3 \
            libbpf1 libibverbs1 librdmacm1 libnuma1 libndctl6 libdaxctl1 >&2)
        rm -rf "$Q.tmp"; mkdir -p "$Q.tmp"
        for d in "$CACHE"/debs/*.deb; do dpkg-deb -x "$d" "$Q.tmp"; done
        rm -rf "$Q"; mv "$Q.tmp" "$Q"
    fi
    QEMU=$Q/usr/bin/qemu-system-x86_64
    QEMU_LIB=$Q/usr/lib/x86_64-linux-gnu
    QEMU_DATA="$Q/usr/share/qemu:$Q/usr/share/seabios"
fi

if [ "$BIN" = "--fetch" ]; then
    note "cache $CACHE ready (qemu: $QEMU)"
    exit 0
fi

# --- initramfs ---
KV=$(basename "$(ls -d "$G"/lib/modules/6.1.0-*-amd64 | head -1)")
R=$OUT/rootfs
rm -rf "$R"
mkdir -p "$R"/{bin,sbin,usr/sbin,etc/lvm,proc,sys,dev,run/lock/lvm,tmp,lib/modules}
cp "$G/bin/busybox" "$R/bin/busybox"
for a in sh mount umount insmod cat ls mkdir poweroff sync sed echo dd cmp sha256sum head tr ip; do
    ln -sf busybox "$R/bin/$a"
done
copy_with_libs() { # FILE DEST
    cp "$1" "$R$2"
    LD_LIBRARY_PATH=$G/lib/x86_64-linux-gnu:$G/usr/lib/x86_64-linux-gnu ldd "$1" |
        awk '/=>/ && $3 ~ /^\//{print $3} /^\t\/.*ld-linux/{print $1}' | while read -r l; do
            d=/lib/x86_64-linux-gnu
            case $l in */ld-linux*) d=$(dirname "$l");; esac
            mkdir -p "$R$d"
            cp -L "$l" "$R$d/"
        done
}
copy_with_libs "$G/sbin/lvm" /sbin/lvm
copy_with_libs "$G/sbin/dmsetup" /sbin/dmsetup 2>/dev/null || copy_with_libs /usr/sbin/dmsetup /sbin/dmsetup
copy_with_libs "$G/usr/sbin/pdata_tools" /usr/sbin/pdata_tools
for t in thin_check thin_repair thin_dump cache_check; do ln -sf pdata_tools "$R/usr/sbin/$t"; done
for t in pvcreate vgcreate lvcreate lvs vgs lvchange lvremove lvrename; do ln -sf lvm "$R/sbin/$t"; done
strip --strip-debug -o "$OUT/t" "$BIN"
copy_with_libs "$OUT/t" /t
if [ -n "$DAEMON" ]; then
    strip --strip-debug -o "$OUT/cinderblock" "$DAEMON"
    copy_with_libs "$OUT/cinderblock" /cinderblock
    mkdir -p "$R/usr/bin"
    copy_with_libs "$(command -v qemu-io)" /usr/bin/qemu-io
fi
python3 - "$G/lib/modules/$KV" crc32c_generic dm_mod dm_thin_pool dm_snapshot virtio_pci virtio_blk >"$OUT/modorder" <<'EOF'
import os, re, sys
root = sys.argv[1]
mods = {}
for d, _, fs in os.walk(root):
    for f in fs:
        if f.endswith('.ko'):
            mods[f[:-3].replace('-', '_')] = os.path.join(d, f)
def deps(name):
    m = re.search(rb'depends=([^\x00]*)\x00', open(mods[name], 'rb').read())
    return [x.replace('-', '_') for x in m.group(1).decode().split(',') if x] if m else []
order = []
def visit(n):
    if n in order or n not in mods:
        return
    for d in deps(n):
        visit(d)
    order.append(n)
for n in sys.argv[2:]:
    visit(n.replace('-', '_'))
for n in order:
    print(mods[n])
EOF
: >"$R/lib/modules/order"
while read -r m; do cp "$m" "$R/lib/modules/"; basename "$m" >>"$R/lib/modules/order"; done <"$OUT/modorder"
cat >"$R/etc/lvm/lvm.conf" <<'EOF'
devices { obtain_device_list_from_udev = 0  use_devicesfile = 0  hints = "none" }
global { use_lvmpolld = 0  locking_dir = "/run/lock/lvm" }
activation { udev_sync = 0  udev_rules = 0  monitoring = 0 }
backup { backup = 0  archive = 0 }
EOF
cat >"$R/init" <<'EOF'
#!/bin/sh
export PATH=/sbin:/usr/sbin:/bin LVM_SUPPRESS_FD_WARNINGS=1 CINDERBLOCK_IN_VM=1 RUST_BACKTRACE=1 HOME=/tmp TMPDIR=/tmp
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m || echo "insmod $m failed"; done
ip link set lo up 2>/dev/null || echo "no loopback interface"
echo "VMTEST booted $(cut -d' ' -f1 /proc/uptime)s"
( /t --exact guest_lvm_suite --nocapture --test-threads=1; echo "VMTEST rc=$?" ) 2>&1 | sed 's/^/[vm] /'
sync
poweroff -f
EOF
chmod +x "$R/init"
(cd "$R" && find . | "$R/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) >"$OUT/initrd.gz"
echo "KERNEL=$G/boot/vmlinuz-$KV"
echo "INITRD=$OUT/initrd.gz"
echo "QEMU=$QEMU"
echo "QEMU_LIB=$QEMU_LIB"
echo "QEMU_DATA=$QEMU_DATA"
