#!/usr/bin/env bash
# Run tempest's volume API suite (tempest.api.volume) against a live cinderblock daemon.
#
#   tests/tempest/run.sh BINARY [DATABASE_URL]
#
# BINARY is the cinderblock executable; DATABASE_URL is `sqlite` (default: a fresh file) or a
# PostgreSQL server URL (postgres://user@host:port/db): a fresh database is created on that
# server for the run and dropped afterwards. The daemon runs in keystone mode with two file pools
# (`default`, `second`) and one admin account tempest makes its dynamic credentials with; tempest.conf is
# tests/tempest/tempest.conf.in with the placeholders filled; tests/tempest/exclude.txt lists the
# tests of features not built yet. Extra environment:
#   CINDERBLOCK_TEMPEST_VENV    venv holding tempest (default /var/tmp/cinderblock-venv-tempest)
#   CINDERBLOCK_TEMPEST_REGEX   test selection (default '^tempest\.api\.volume\.')
#   CINDERBLOCK_TEMPEST_CONCURRENCY  workers (default 4)
#   CINDERBLOCK_TEMPEST_KEEP=1  keep the work directory (daemon log, tempest.log) after the run
# Exit status: 0 when no test failed and at least one passed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${1:?usage: run.sh BINARY [DATABASE_URL]}
DB=${2:-sqlite}
VENV=${CINDERBLOCK_TEMPEST_VENV:-/var/tmp/cinderblock-venv-tempest}
REGEX=${CINDERBLOCK_TEMPEST_REGEX:-'^tempest\.api\.volume\.'}
CONCURRENCY=${CINDERBLOCK_TEMPEST_CONCURRENCY:-4}
[ -x "$VENV/bin/tempest" ] || { echo "ERROR: no tempest in $VENV" >&2; exit 2; }

WORK=$(mktemp -d /tmp/cinderblock-tempest-XXXXXX)
DAEMON_PID=
PG_DB=
cleanup() {
    local rc=$?
    if [ -n "$DAEMON_PID" ]; then
        kill "$DAEMON_PID" 2>/dev/null || true
        wait "$DAEMON_PID" 2>/dev/null || true
    fi
    if [ -n "$PG_DB" ]; then
        psql "$PG_ADMIN_URL" -q -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [ "${CINDERBLOCK_TEMPEST_KEEP:-0}" = "1" ]; then
        echo "tempest work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT

if [ "$DB" = "sqlite" ]; then
    DB_URL="sqlite://$WORK/cinderblock.db"
    DB_LABEL=SQLite
else
    PG_ADMIN_URL=$DB
    PG_DB="cinderblock_tempest_$$_$(date +%s)"
    psql "$PG_ADMIN_URL" -q -c "CREATE DATABASE $PG_DB" >/dev/null
    DB_URL="${DB%/*}/$PG_DB"
    DB_LABEL=PostgreSQL
fi

mkdir -p "$WORK/pool-default" "$WORK/pool-second"
cat >"$WORK/config.toml" <<CONF
listen = "127.0.0.1:0"
node = "tempest"
log = "info"
default_availability_zone = "nova"
default_volume_type = "__DEFAULT__"

[database]
url = "$DB_URL"

[auth]
mode = "keystone"

[exports]
nbd_listen = "127.0.0.1:0"

[[pools]]
name = "default"
driver = "file"
path = "$WORK/pool-default"
availability_zone = "nova"
volume_types = ["__DEFAULT__", "SSD", "SAS", "SATA"]
max_over_subscription_ratio = 20.0

[[pools]]
name = "second"
driver = "file"
path = "$WORK/pool-second"
availability_zone = "nova"
volume_types = ["__DEFAULT__", "SSD", "SAS", "SATA"]
max_over_subscription_ratio = 20.0
CONF

# The daemon reads CINDERBLOCK_* as configuration overrides: none of the test switches may reach it.
clean_env() {
    local unset=() k
    for k in $(compgen -e); do
        case "$k" in CINDERBLOCK_*) unset+=(-u "$k") ;; esac
    done
    env "${unset[@]}" "$@"
}
admin() {
    clean_env "$BIN" admin "$@" --config "$WORK/config.toml"
}
PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
# One admin account: tempest runs with dynamic credentials, as in devstack, so it makes (and
# afterwards deletes) a project and users with the roles each test class asks for through
# cinderblock's Keystone v3 admin API; the harness provisions only the admin it does that with.
admin project create tempest-admin >/dev/null
printf '%s\n' "$PASSWORD" | admin user create tempest-admin --project tempest-admin --role admin >/dev/null

# Start the daemon and wait (with a deadline) for its listening line.
# Not through the clean_env function: a function run in the background is a subshell, so $!
# would be the subshell's pid and the cleanup would leave the daemon running. `env` execs the
# daemon in place, so $! is the daemon.
UNSET=()
for k in $(compgen -e); do
    case "$k" in CINDERBLOCK_*) UNSET+=(-u "$k") ;; esac
done
env "${UNSET[@]}" "$BIN" serve --config "$WORK/config.toml" >"$WORK/daemon.out" 2>"$WORK/daemon.log" &
DAEMON_PID=$!
BASE=
for _ in $(seq 1 300); do
    BASE=$(sed -nE 's#^cinderblock listening on (http://[0-9.:]+).*#\1#p' "$WORK/daemon.out" | head -n 1)
    [ -n "$BASE" ] && break
    kill -0 "$DAEMON_PID" 2>/dev/null || { echo "ERROR: the daemon exited" >&2; tail -50 "$WORK/daemon.log" >&2; exit 1; }
    sleep 0.1
done
[ -n "$BASE" ] || { echo "ERROR: the daemon printed no listening line" >&2; tail -50 "$WORK/daemon.log" >&2; exit 1; }

# The image tempest's volume-from-image tests use (CONF.compute.image_ref): a small qcow2
# uploaded through cinderblock's own Glance v2 API by an admin, public so every account sees it.
token() { # USER PROJECT
    curl -sf -o /dev/null -D - -H 'Content-Type: application/json' \
        -d '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"'"$1"'","domain":{"name":"Default"},"password":"'"$PASSWORD"'"}}},"scope":{"project":{"name":"'"$2"'","domain":{"name":"Default"}}}}}' \
        "$BASE/identity/v3/auth/tokens" | sed -nE 's/^[Xx]-[Ss]ubject-[Tt]oken: *([^[:space:]]+).*/\1/p'
}
ADMIN_TOKEN=$(token tempest-admin tempest-admin)
[ -n "$ADMIN_TOKEN" ] || { echo "ERROR: no admin token for the image upload" >&2; exit 1; }
qemu-img create -q -f qcow2 "$WORK/tempest-image.qcow2" 64M
IMAGE_ID=$(curl -sf -H "X-Auth-Token: $ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d '{"name":"tempest-image","disk_format":"qcow2","container_format":"bare","visibility":"public"}' \
    "$BASE/image/v2/images" | "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["id"])')
[ -n "$IMAGE_ID" ] || { echo "ERROR: creating the tempest image failed" >&2; exit 1; }
curl -sf -X PUT -H "X-Auth-Token: $ADMIN_TOKEN" -H 'Content-Type: application/octet-stream' \
    --data-binary "@$WORK/tempest-image.qcow2" "$BASE/image/v2/images/$IMAGE_ID/file" >/dev/null ||
    { echo "ERROR: uploading the tempest image failed" >&2; exit 1; }

cd "$WORK"
# tempest keeps a workspace registry in $HOME: give it the work directory, so runs never collide.
export HOME=$WORK
"$VENV/bin/tempest" init tempest-ws >/dev/null
sed -e "s#@BASE@#$BASE#g" -e "s#@PASSWORD@#$PASSWORD#g" -e "s#@IMAGE@#$IMAGE_ID#g" "$HERE/tempest.conf.in" >tempest-ws/etc/tempest.conf
cd tempest-ws
echo "tempest $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("tempest"))') against $BASE ($DB_LABEL), regex $REGEX"
set +e
# exclude.txt names the tests of features cinderblock does not have yet, each group with the
# reason; nothing else may be excluded.
"$VENV/bin/tempest" run --regex "$REGEX" --exclude-list "$HERE/exclude.txt" --concurrency "$CONCURRENCY" \
    >"$WORK/tempest-run.txt" 2>&1
RC=$?
set -e
# Failed tests with their tracebacks, then the totals.
"$VENV/bin/stestr" last --subunit 2>/dev/null | "$VENV/bin/subunit-filter" -s --no-passthrough --without 'skip' 2>/dev/null |
    "$VENV/bin/subunit-trace" --no-summary --fails 2>/dev/null | sed -n '/^={5,}$/,$p' | head -n 2000 || true
FAILED_LIST=$("$VENV/bin/stestr" last --list 2>/dev/null | head -n 0; "$VENV/bin/stestr" failing --list 2>/dev/null || true)
if [ -n "$FAILED_LIST" ]; then
    echo "failed tempest tests:"
    printf '%s\n' "$FAILED_LIST" | sed 's/^/  /'
fi
TOTALS=$(sed -n '/^Totals$/,/Sum of execute time/p' "$WORK/tempest-run.txt")
echo "$TOTALS"
PASSED=$(printf '%s\n' "$TOTALS" | sed -nE 's/^ - Passed: ([0-9]+)/\1/p')
FAILED=$(printf '%s\n' "$TOTALS" | sed -nE 's/^ - Failed: ([0-9]+)/\1/p')
SKIPPED=$(printf '%s\n' "$TOTALS" | sed -nE 's/^ - Skipped: ([0-9]+)/\1/p')
echo "tempest ($DB_LABEL): ${PASSED:-0} passed, ${FAILED:-?} failed, ${SKIPPED:-0} skipped"
if [ "$RC" -ne 0 ] || [ "${PASSED:-0}" -eq 0 ]; then
    tail -n 30 "$WORK/tempest-run.txt"
    echo "--- daemon log (last 40 lines) ---"
    tail -n 40 "$WORK/daemon.log"
    exit 1
fi
