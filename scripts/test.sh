#!/usr/bin/env bash
# The test command of cinderblock: runs the whole suite (unit, integration, real clients).
#
#   ./scripts/test.sh                 # everything
#   ./scripts/test.sh --test clients  # extra arguments go to `cargo test`
#
# On a fresh machine it installs what the suite needs and reuses it on later runs:
#   - Debian packages, only when a command is missing (need_pkg);
#   - a Python venv with the real clients (Huawei EVS SDK, cinder and openstack CLIs), OUTSIDE
#     the clone: ${CINDERBLOCK_CLIENT_VENV:-/var/tmp/cinderblock-venv-clients};
#   - a second venv with OpenStack's conformance suite, tempest (tests/tempest/requirements.txt):
#     ${CINDERBLOCK_TEMPEST_VENV:-/var/tmp/cinderblock-venv-tempest}. After `cargo test`, tempest's
#     volume API suite runs against a live daemon (tests/tempest/run.sh) on SQLite, and on
#     PostgreSQL too when TEST_DATABASE_URL is set; any tempest failure fails the run.
#
# Environment:
#   CARGO_TARGET_DIR              build dir (default /var/tmp/cinderblock-target)
#   CINDERBLOCK_CLIENT_VENV       client venv (created when missing)
#   CINDERBLOCK_LEGACY_HWSDK_VENV legacy Huawei SDK venv, Python 3.9 (created when missing)
#   CINDERBLOCK_REQUIRE_CLIENTS   1 (default): real-client tests fail instead of skipping;
#                                 0: a venv that cannot be installed only skips them
#   CINDERBLOCK_REQUIRE_PRIVILEGED=1  privileged tests fail instead of skipping (CI sets it)
#   TEST_DATABASE_URL             postgres://… : integration tests also run on PostgreSQL
#   CINDERBLOCK_TEMPEST           1 (default): run tempest after cargo test; 0: skip it (it is
#                                 also skipped when extra arguments select part of the suite)
#   CINDERBLOCK_FUZZ              1 (default): run every cargo-fuzz target for
#                                 CINDERBLOCK_FUZZ_SECONDS (30) each after the tests
#                                 (scripts/fuzz.sh); 0 skips; skipped like tempest when extra
#                                 arguments select part of the suite
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/cinderblock-target}
export CINDERBLOCK_CLIENT_VENV=${CINDERBLOCK_CLIENT_VENV:-/var/tmp/cinderblock-venv-clients}
export CINDERBLOCK_REQUIRE_CLIENTS=${CINDERBLOCK_REQUIRE_CLIENTS:-1}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export CINDERBLOCK_TEMPEST_VENV=${CINDERBLOCK_TEMPEST_VENV:-/var/tmp/cinderblock-venv-tempest}
RUN_TEMPEST=${CINDERBLOCK_TEMPEST:-1}
[ "$#" -eq 0 ] || RUN_TEMPEST=0

CLIENT_REQUIREMENTS="$ROOT/tests/clients/requirements.txt"
START=$(date +%s)

log() { printf '==> %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Debian packages: need_pkg COMMAND PACKAGE installs PACKAGE only when COMMAND is missing.
APT_UPDATED=0
need_pkg() {
    local cmd=$1 pkg=$2
    if command -v "$cmd" >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        warn "$cmd is missing and we are not root: install the Debian package $pkg (tests needing it will skip)"
        return 0
    fi
    log "installing $pkg (for $cmd)"
    if [ "$APT_UPDATED" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
    command -v "$cmd" >/dev/null 2>&1 || die "installed $pkg but $cmd is still missing"
}

# Needed by this script itself.
need_pkg flock util-linux
# Privileged pool tests (tests/reflink_pools.rs): XFS with reflink, btrfs, ext4 on loop devices.
need_pkg mkfs.xfs xfsprogs
need_pkg mkfs.btrfs btrfs-progs
need_pkg mkfs.ext4 e2fsprogs
need_pkg filefrag e2fsprogs
need_pkg losetup mount
# NBD interop tests (tests/nbd_interop.rs, tests/api_attach.rs): real NBD clients.
need_pkg nbdinfo libnbd-bin
need_pkg nbdcopy libnbd-bin
need_pkg fio fio
need_pkg qemu-img qemu-utils
need_pkg qemu-io qemu-utils
# TLS tests (tests/nbd_tls.rs, tests/api_tls.rs): a throwaway CA, HTTPS requests.
need_pkg openssl openssl
need_pkg curl curl
# Operations tests (tests/systemd_unit.rs): the unit is checked with systemd-analyze.
need_pkg systemd-analyze systemd
# tests/ops_metrics.rs: the /metrics text must pass `promtool check metrics`.
need_pkg promtool prometheus
# tests/ui_browser.rs: the web dashboard in Debian's headless Chromium, driven over WebDriver
# by Debian's chromedriver (installed once, then found on later runs). Its screenshots go to
# $CINDERBLOCK_UI_SCREENSHOTS (default: ui-screenshots/ in the target dir).
need_pkg chromium chromium
need_pkg chromedriver chromium-driver
# Legible screenshots need a font (chromium only recommends one).
if [ ! -d /usr/share/fonts/truetype/liberation ] && [ "$(id -u)" -eq 0 ]; then
    log "installing fonts-liberation (for the dashboard screenshots)"
    if [ "$APT_UPDATED" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-liberation >/dev/null \
        || warn "could not install fonts-liberation (screenshots may show no text)"
fi
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    export CINDERBLOCK_REQUIRE_BROWSER="${CINDERBLOCK_REQUIRE_BROWSER:-1}"
fi
# tests/lvm_vm.rs: the LVM driver against real dm-thin in a QEMU TCG VM (this kernel has no
# device-mapper). scripts/vm/build-initramfs.sh downloads, once, the guest's Debian kernel,
# busybox, lvm2 and thin-provisioning-tools, and QEMU 10 from bookworm-backports only when no
# /usr/bin/qemu-system-x86_64 >= 10 is installed (extracted, system apt config untouched),
# into ${CINDERBLOCK_VM_CACHE:-/var/tmp/cinderblock-vm}; later runs reuse the cache.
need_pkg dpkg-deb dpkg
need_pkg strip binutils
need_pkg gzip gzip
need_pkg python3 python3
if [ "$(id -u)" -eq 0 ]; then
    T0=$(date +%s)
    "$ROOT/scripts/vm/build-initramfs.sh" --fetch ||
        warn "could not fetch the LVM test VM's packages (tests/lvm_vm.rs will skip, or fail under CINDERBLOCK_REQUIRE_PRIVILEGED=1)"
    log "LVM test VM ingredients ready in $(( $(date +%s) - T0 ))s"
fi
# tests/rbd_conformance.rs and tests/rbd_api.rs (built with --features rbd): a throwaway single-node Ceph cluster
# (scripts/ceph/cluster.sh: one mon, one mgr, one bluestore OSD on a sparse file) and librbd to
# link against; Debian bookworm's Pacific 16.2, about 2 minutes to install the first time.
need_pkg ceph-mon ceph-mon
need_pkg ceph-mgr ceph-mgr
need_pkg ceph-osd ceph-osd
need_pkg rbd ceph-common
need_pkg uuidgen uuid-runtime
if [ ! -e /usr/lib/x86_64-linux-gnu/librbd.so ] && [ ! -e /usr/lib/librbd.so ]; then
    if [ "$(id -u)" -eq 0 ]; then
        log "installing librbd-dev (for --features rbd)"
        [ "$APT_UPDATED" -eq 1 ] || { DEBIAN_FRONTEND=noninteractive apt-get update -qq; APT_UPDATED=1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends librbd-dev >/dev/null
    else
        warn "librbd-dev is missing and we are not root: the rbd feature cannot be built (tests/rbd_conformance.rs is skipped)"
    fi
fi
# tests/deb_package.rs: the .deb is built by cargo-deb, checked by lintian and installed with
# dpkg into a bookworm chroot made once by mmdebstrap (scripts/deb_chroot.sh, cached under
# /var/tmp).
need_pkg mmdebstrap mmdebstrap
need_pkg lintian lintian
need_pkg strip binutils
if ! cargo deb --version >/dev/null 2>&1; then
    log "installing cargo-deb (cargo install, kept in ~/.cargo/bin)"
    cargo install --locked --quiet cargo-deb --version 3.8.0 ||
        warn "cargo-deb could not be installed (tests/deb_package.rs will fail or skip)"
fi

# ---------------------------------------------------------------------------------------------
# PostgreSQL: when TEST_DATABASE_URL names a local server that is not up, try to start it.
ensure_postgres() {
    local url=${TEST_DATABASE_URL:-}
    [ -n "$url" ] || return 0
    case "$url" in
        postgres://*@127.0.0.1*|postgres://*@localhost*|postgresql://*@127.0.0.1*|postgresql://*@localhost*) ;;
        *) return 0 ;;
    esac
    command -v pg_isready >/dev/null 2>&1 || return 0
    if pg_isready -q -h 127.0.0.1 -t 5; then
        return 0
    fi
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        local ver
        for ver in /etc/postgresql/*; do
            log "starting PostgreSQL cluster $(basename "$ver")/main"
            pg_ctlcluster --skip-systemctl-redirect "$(basename "$ver")" main start || true
        done
        local i
        for i in $(seq 1 30); do
            pg_isready -q -h 127.0.0.1 -t 1 && return 0
            sleep 1
        done
    fi
    die "TEST_DATABASE_URL=$url but PostgreSQL on 127.0.0.1 is not accepting connections"
}
ensure_postgres

# ---------------------------------------------------------------------------------------------
# Client venv: created once, re-installed only when tests/clients/requirements.txt changes.
client_venv_ok() {
    local venv=$1 marker=$2
    [ -x "$venv/bin/python" ] && [ -f "$venv/.cinderblock-requirements" ] &&
        [ "$(cat "$venv/.cinderblock-requirements")" = "$marker" ] &&
        [ -x "$venv/bin/openstack" ] && [ -x "$venv/bin/cinder" ] &&
        "$venv/bin/python" -c 'import huaweicloudsdkevs.v2, huaweicloudsdkcore, cinderclient, openstack' \
            >/dev/null 2>&1
}

install_client_venv() {
    local venv=$CINDERBLOCK_CLIENT_VENV python
    python=$(command -v python3 || true)
    [ -n "$python" ] || need_pkg python3 python3
    python=$(command -v python3)
    if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        need_pkg_module_venv
    fi
    local marker
    marker="$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') $(sha256sum "$CLIENT_REQUIREMENTS" | cut -d' ' -f1)"

    mkdir -p "$(dirname "$venv")"
    # Two runs at once must not install into the same venv together.
    exec 9>"$venv.lock"
    flock 9
    if client_venv_ok "$venv" "$marker"; then
        log "client venv $venv is up to date"
        exec 9>&-
        return 0
    fi
    log "installing the real clients into $venv (from $CLIENT_REQUIREMENTS)"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        :
    else
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi
    local ok=0 attempt
    for attempt in 1 2 3; do
        if "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --retries 5 \
            -r "$CLIENT_REQUIREMENTS"; then
            ok=1
            break
        fi
        warn "pip install failed (attempt $attempt of 3)"
        sleep $((attempt * 5))
    done
    if [ "$ok" -eq 1 ] && client_venv_ok_without_marker "$venv"; then
        printf '%s' "$marker" >"$venv/.cinderblock-requirements"
        log "client venv ready: $("$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null |
            grep -iE '^(huaweicloudsdkevs|python-cinderclient|openstacksdk|python-openstackclient) ' |
            awk '{printf "%s %s; ", $1, $2}')"
        exec 9>&-
        return 0
    fi
    exec 9>&-
    return 1
}

client_venv_ok_without_marker() {
    local venv=$1
    [ -x "$venv/bin/openstack" ] && [ -x "$venv/bin/cinder" ] &&
        "$venv/bin/python" -c 'import huaweicloudsdkevs.v2, huaweicloudsdkcore, cinderclient, openstack'
}

need_pkg_module_venv() {
    # Debian's own python3 needs python3-venv for `python3 -m venv`.
    if [ "$(id -u)" -eq 0 ]; then
        if [ "$APT_UPDATED" -eq 0 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            APT_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    fi
}

if ! install_client_venv; then
    if [ "$CINDERBLOCK_REQUIRE_CLIENTS" = "1" ]; then
        die "could not install the client venv $CINDERBLOCK_CLIENT_VENV (set CINDERBLOCK_REQUIRE_CLIENTS=0 to skip the real-client tests)"
    fi
    warn "client venv unavailable: real-client tests will be skipped"
    unset CINDERBLOCK_CLIENT_VENV
fi

# ---------------------------------------------------------------------------------------------
# Legacy Huawei SDK venv (huaweicloud-sdk-python): Python 3.9, which it needs. Built once and
# re-installed only when tests/clients/requirements-legacy-hwsdk.txt changes. Without a Python
# 3.9 interpreter on the machine the legacy test is skipped with a printed reason.
export CINDERBLOCK_LEGACY_HWSDK_VENV=${CINDERBLOCK_LEGACY_HWSDK_VENV:-/var/tmp/cinderblock-venv-legacy-hwsdk}
LEGACY_REQUIREMENTS="$ROOT/tests/clients/requirements-legacy-hwsdk.txt"
python39() {
    local p
    for p in "$(command -v python3.9 || true)" "${PYENV_ROOT:-/root/.pyenv}"/versions/3.9*/bin/python3.9; do
        if [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import venv' >/dev/null 2>&1; then
            printf '%s' "$p"
            return 0
        fi
    done
    return 1
}
install_legacy_venv() {
    local venv=$CINDERBLOCK_LEGACY_HWSDK_VENV python marker attempt
    python=$(python39) || return 2
    marker="$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') $(sha256sum "$LEGACY_REQUIREMENTS" | cut -d' ' -f1)"
    mkdir -p "$(dirname "$venv")"
    exec 7>"$venv.lock"
    flock 7
    if [ "$(cat "$venv/.cinderblock-requirements" 2>/dev/null)" = "$marker" ] &&
        "$venv/bin/python" -c 'from openstack import connection' >/dev/null 2>&1; then
        log "legacy Huawei SDK venv $venv is up to date"
        exec 7>&-
        return 0
    fi
    log "installing the legacy Huawei SDK into $venv with $python"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    for attempt in 1 2 3; do
        if "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --retries 5 \
            -r "$LEGACY_REQUIREMENTS" && "$venv/bin/python" -c 'from openstack import connection'; then
            printf '%s' "$marker" >"$venv/.cinderblock-requirements"
            exec 7>&-
            return 0
        fi
        warn "pip install of the legacy Huawei SDK failed (attempt $attempt of 3)"
        sleep $((attempt * 5))
    done
    exec 7>&-
    return 1
}
legacy_rc=0
install_legacy_venv || legacy_rc=$?
if [ "$legacy_rc" -eq 2 ]; then
    warn "no Python 3.9 interpreter: the legacy huaweicloud-sdk-python test will be skipped"
    unset CINDERBLOCK_LEGACY_HWSDK_VENV
elif [ "$legacy_rc" -ne 0 ]; then
    if [ "$CINDERBLOCK_REQUIRE_CLIENTS" = "1" ]; then
        die "could not install the legacy Huawei SDK into $CINDERBLOCK_LEGACY_HWSDK_VENV (set CINDERBLOCK_REQUIRE_CLIENTS=0 to skip it)"
    fi
    warn "legacy Huawei SDK venv unavailable: its test will be skipped"
    unset CINDERBLOCK_LEGACY_HWSDK_VENV
fi

# ---------------------------------------------------------------------------------------------
# Tempest venv: its own (tempest pins oslo and keystoneauth versions other than the CLIs'),
# created once and re-installed only when tests/tempest/requirements.txt changes.
TEMPEST_REQUIREMENTS="$ROOT/tests/tempest/requirements.txt"
install_tempest_venv() {
    local venv=$CINDERBLOCK_TEMPEST_VENV python marker attempt
    python=$(command -v python3)
    marker="$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])') $(sha256sum "$TEMPEST_REQUIREMENTS" | cut -d' ' -f1)"
    mkdir -p "$(dirname "$venv")"
    exec 8>"$venv.lock"
    flock 8
    if [ -x "$venv/bin/tempest" ] && [ "$(cat "$venv/.cinderblock-requirements" 2>/dev/null)" = "$marker" ]; then
        log "tempest venv $venv is up to date"
        exec 8>&-
        return 0
    fi
    log "installing tempest into $venv (from $TEMPEST_REQUIREMENTS)"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    for attempt in 1 2 3; do
        if "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --retries 5 \
            -r "$TEMPEST_REQUIREMENTS" && [ -x "$venv/bin/tempest" ]; then
            printf '%s' "$marker" >"$venv/.cinderblock-requirements"
            exec 8>&-
            return 0
        fi
        warn "pip install of tempest failed (attempt $attempt of 3)"
        sleep $((attempt * 5))
    done
    exec 8>&-
    return 1
}
if [ "$RUN_TEMPEST" = "1" ]; then
    need_pkg psql postgresql-client
    install_tempest_venv || die "could not install tempest into $CINDERBLOCK_TEMPEST_VENV (set CINDERBLOCK_TEMPEST=0 to skip it)"
fi

# ---------------------------------------------------------------------------------------------
# The suite.
log "cargo $(cargo --version | cut -d' ' -f2), target dir $CARGO_TARGET_DIR"
log "TEST_DATABASE_URL=${TEST_DATABASE_URL:-<unset: SQLite only>}  CINDERBLOCK_REQUIRE_PRIVILEGED=${CINDERBLOCK_REQUIRE_PRIVILEGED:-0}  CINDERBLOCK_REQUIRE_CLIENTS=$CINDERBLOCK_REQUIRE_CLIENTS"

mkdir -p "$CARGO_TARGET_DIR"
export CINDERBLOCK_UI_SCREENSHOTS="${CINDERBLOCK_UI_SCREENSHOTS:-$CARGO_TARGET_DIR/ui-screenshots}"
OUT="$CARGO_TARGET_DIR/cinderblock-test-output.log"
log "running cargo test --no-fail-fast $* (output also saved to $OUT)"
set +e
cargo test --no-fail-fast "$@" 2>&1 | tee "$OUT"
STATUS=${PIPESTATUS[0]}
# The RBD driver (cargo feature `rbd`): only its own test binaries are built with the feature, so
# the extra build is the library once more. Skipped like tempest when arguments select part of
# the suite, and when librbd is not installed.
if [ "$#" -eq 0 ]; then
    if [ -e /usr/lib/x86_64-linux-gnu/librbd.so ] || [ -e /usr/lib/librbd.so ]; then
        log "running cargo test --features rbd --test rbd_conformance --test rbd_api"
        cargo test --no-fail-fast --features rbd --test rbd_conformance --test rbd_api 2>&1 | tee -a "$OUT"
        RBD_STATUS=${PIPESTATUS[0]}
        [ "$RBD_STATUS" -eq 0 ] || STATUS=$RBD_STATUS
    elif [ "${CINDERBLOCK_REQUIRE_PRIVILEGED:-0}" = 1 ]; then
        echo "test result: FAILED. 0 passed; 1 failed; 0 ignored; librbd-dev missing under CINDERBLOCK_REQUIRE_PRIVILEGED=1" | tee -a "$OUT"
        STATUS=1
    else
        warn "librbd-dev is not installed: tests/rbd_conformance.rs and tests/rbd_api.rs skipped"
    fi
fi
set -e

# ---------------------------------------------------------------------------------------------
# Summary: totals over every test binary, and the names of failed tests.
PASSED=0 FAILED=0 IGNORED=0 BINARIES=0
while read -r p f i; do
    PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) IGNORED=$((IGNORED + i)) BINARIES=$((BINARIES + 1))
done < <(sed -nE 's/^test result: [a-zA-Z]+\. ([0-9]+) passed; ([0-9]+) failed; ([0-9]+) ignored.*/\1 \2 \3/p' "$OUT")
# "<test binary>: <test name>" for every failed test, e.g. "tests/clients.rs: cinder_cli_volume_lifecycle".
FAILED_NAMES=$(awk '
    /^ *Running / { bin = $2; if (bin == "unittests") bin = $3 }
    /^ *Doc-tests / { bin = "doc-tests " $2 }
    /^test .* \.\.\. FAILED$/ { sub(/^test /, ""); sub(/ \.\.\. FAILED$/, ""); print bin ": " $0 }
' "$OUT")
ELAPSED=$(( $(date +%s) - START ))

echo
echo "================================ cinderblock test summary ================================"
echo "test binaries: $BINARIES   time: ${ELAPSED}s   cargo exit status: $STATUS"
if [ -n "$FAILED_NAMES" ]; then
    echo "failed tests:"
    printf '%s\n' "$FAILED_NAMES" | sed 's/^/  /'
fi
if [ "$STATUS" -ne 0 ] && [ "$FAILED" -eq 0 ]; then
    echo "cargo test failed without a failed test (build error or a test binary crashed): see above"
    FAILED=1
fi
echo "tests: $PASSED passed, $FAILED failed, $IGNORED skipped"

# ---------------------------------------------------------------------------------------------
# Tempest: OpenStack's conformance suite against the daemon cargo just built, on each database.
TEMPEST_STATUS=0
if [ "$RUN_TEMPEST" = "1" ]; then
    DBS=(sqlite)
    [ -n "${TEST_DATABASE_URL:-}" ] && DBS+=("$TEST_DATABASE_URL")
    for db in "${DBS[@]}"; do
        log "tempest (tempest.api.volume) on ${db%%:*}"
        T0=$(date +%s)
        if ! "$ROOT/tests/tempest/run.sh" "$CARGO_TARGET_DIR/debug/cinderblock" "$db"; then
            TEMPEST_STATUS=1
        fi
        log "tempest on ${db%%:*} took $(( $(date +%s) - T0 ))s"
    done
fi
# Fuzzing: every cargo-fuzz target, bounded (scripts/fuzz.sh).
FUZZ_STATUS=0
RUN_FUZZ=${CINDERBLOCK_FUZZ:-1}
[ "$#" -eq 0 ] || RUN_FUZZ=0
if [ "$RUN_FUZZ" = "1" ]; then
    T0=$(date +%s)
    "$ROOT/scripts/fuzz.sh" || FUZZ_STATUS=1
    log "fuzzing took $(( $(date +%s) - T0 ))s"
fi
echo "total time: $(( $(date +%s) - START ))s"
if [ "$STATUS" -ne 0 ]; then
    exit "$STATUS"
fi
if [ "$TEMPEST_STATUS" -ne 0 ]; then
    echo "ERROR: tempest failed (see above)" >&2
    exit 1
fi
if [ "$FUZZ_STATUS" -ne 0 ]; then
    echo "ERROR: fuzzing found a failure (see above)" >&2
    exit 1
fi
if [ "$PASSED" -eq 0 ]; then
    echo "ERROR: no test ran" >&2
    exit 1
fi
