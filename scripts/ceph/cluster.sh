#!/usr/bin/env bash
# A throwaway single-node Ceph cluster for the RBD tests (tests/rbd_conformance.rs), after
# BACKENDS.md §1: one monitor, one manager (without it the cluster reports no capacity: `rados
# df` says 0 bytes) and one bluestore OSD on a 4 GiB sparse file, no cephx, pool size 1, everything (config, data, sockets, logs, pid files) under DIR. No systemd, no
# /etc/ceph, no /var/lib/ceph.
#
#   cluster.sh start DIR MON_V2_PORT MON_V1_PORT [none|cephx]
#                                                  # prints CEPH_CONF=DIR/ceph.conf when writable
#
# With cephx every daemon gets its own keyring (per-section `keyring =` lines: a global one
# would override the mgr's and OSDs'), client.admin's is DIR/keyring, and a client
# `client.cinderblock` with Ceph's `profile rbd` caps on pool rbd gets DIR/cinderblock.keyring.
#   cluster.sh stop DIR                            # stops the daemons by their pid files, removes DIR
#
# `stop` kills only a pid whose /proc/PID/comm is ceph-mon, -mgr or -osd and whose command line
# names DIR's ceph.conf, so a stale pid file never kills someone else's process. A failed
# `start` stops what it started.
set -euo pipefail

cmd=${1:?usage: cluster.sh start|stop DIR [V2_PORT V1_PORT]}
D=${2:?DIR}
C=$D/ceph.conf

stop() {
    local pids="" f p
    for f in "$D"/run/*.pid; do
        [ -f "$f" ] || continue
        p=$(cat "$f" 2>/dev/null || true)
        [ -n "$p" ] || continue
        case "$(cat /proc/"$p"/comm 2>/dev/null)" in
        ceph-mon | ceph-osd | ceph-mgr)
            if tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null | grep -qF -- "$C"; then
                kill "$p" 2>/dev/null || true
                pids="$pids $p"
            fi
            ;;
        esac
    done
    local i alive
    for i in $(seq 1 100); do
        alive=0
        for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in $pids; do kill -0 "$p" 2>/dev/null && kill -9 "$p" 2>/dev/null || true; done
    rm -rf "$D"
}

if [ "$cmd" = stop ]; then
    stop
    exit 0
fi
[ "$cmd" = start ] || { echo "unknown command $cmd" >&2; exit 2; }
V2=${3:?V2_PORT}
V1=${4:?V1_PORT}
AUTH=${5:-none}
case "$AUTH" in none | cephx) ;; *) echo "auth must be none or cephx" >&2; exit 2 ;; esac
for t in ceph-mon ceph-mgr ceph-osd ceph ceph-authtool monmaptool rados rbd uuidgen; do
    command -v "$t" >/dev/null || { echo "missing $t (apt-get install ceph-mon ceph-mgr ceph-osd ceph-common)" >&2; exit 3; }
done
trap 'rc=$?; [ $rc -eq 0 ] || { echo "ceph bootstrap failed (rc=$rc); logs:" >&2; tail -n 20 "$D"/log/*.log >&2 2>/dev/null || true; stop; }' EXIT

mkdir -p "$D"/run "$D"/log "$D"/crash
FSID=$(uuidgen)
cat >"$C" <<CONF
[global]
fsid = $FSID
mon_host = [v2:127.0.0.1:$V2,v1:127.0.0.1:$V1]
public_network = 127.0.0.0/8
auth_cluster_required = $AUTH
auth_service_required = $AUTH
auth_client_required = $AUTH
run_dir = $D/run
admin_socket = $D/run/\$name.asok
pid_file = $D/run/\$name.pid
log_file = $D/log/\$name.log
crash_dir = $D/crash
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
auth_allow_insecure_global_id_reclaim = false
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 2
mon_data_avail_crit = 1
ms_bind_ipv6 = false
[client]
keyring = $D/keyring
[mon]
keyring = $D/keyring
mon_data = $D/mon.\$id
mon_cluster_log_file = $D/log/cluster.log
[mgr]
mgr_data = $D/mgr.\$id
keyring = $D/mgr.\$id/keyring
[osd]
osd_data = $D/osd.\$id
keyring = $D/osd.\$id/keyring
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = $((4 << 30))
bluestore_fsck_on_mkfs = false
bluestore_fsck_on_mount = false
osd_memory_target = 1073741824
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1
CONF

ceph-authtool --create-keyring "$D"/keyring --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$D"/keyring --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$V2,v1:127.0.0.1:$V1]" "$D"/monmap >/dev/null
ceph-mon -c "$C" --mkfs -i a --monmap "$D"/monmap --keyring "$D"/keyring
ceph-mon -c "$C" -i a
CEPH="timeout 30 ceph -c $C --connect-timeout 20"
mkdir -p "$D"/mgr.x
if [ "$AUTH" = cephx ]; then
    $CEPH auth get-or-create mgr.x mon 'allow profile mgr' osd 'allow *' -o "$D"/mgr.x/keyring
fi
ceph-mgr -c "$C" -i x
U=$(uuidgen)
ID=$($CEPH osd new "$U")
mkdir -p "$D"/osd."$ID"
if [ "$AUTH" = cephx ]; then
    ceph-authtool --create-keyring "$D"/osd."$ID"/keyring --gen-key -n osd."$ID" >/dev/null
    $CEPH auth add osd."$ID" osd 'allow *' mon 'allow profile osd' mgr 'allow profile osd' -i "$D"/osd."$ID"/keyring >/dev/null
fi
ceph-osd -c "$C" -i "$ID" --mkfs --osd-uuid "$U" >"$D"/log/osd."$ID".mkfs.log 2>&1
ceph-osd -c "$C" -i "$ID"
up=0
for _ in $(seq 1 300); do
    up=$($CEPH osd stat -f json | python3 -c 'import json,sys; print(json.load(sys.stdin)["num_up_osds"])')
    [ "$up" = 1 ] && break
    sleep 0.2
done
[ "$up" = 1 ] || { echo "the OSD did not come up" >&2; exit 4; }
$CEPH osd pool create rbd 32 32 >/dev/null 2>&1
timeout 60 rbd -c "$C" pool init rbd
# Without a manager there are no PG stats: a real write says the pool is writable.
ok=0
for _ in $(seq 1 300); do
    if timeout 10 rados -c "$C" -p rbd put cinderblock-probe /etc/hostname 2>/dev/null; then ok=1; break; fi
    sleep 0.2
done
[ "$ok" = 1 ] || { echo "pool rbd never became writable" >&2; exit 5; }
timeout 10 rados -c "$C" -p rbd rm cinderblock-probe
# The driver's capacity comes from the manager's statistics: wait until it has some.
ok=0
for _ in $(seq 1 300); do
    if $CEPH df -f json 2>/dev/null | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["stats"]["total_bytes"] > 0 else 1)'; then
        ok=1
        break
    fi
    sleep 0.2
done
[ "$ok" = 1 ] || { echo "the manager never reported the cluster's capacity" >&2; exit 6; }
if [ "$AUTH" = cephx ]; then
    $CEPH auth get-or-create client.cinderblock mon 'profile rbd' osd 'profile rbd pool=rbd' mgr 'profile rbd pool=rbd' \
        -o "$D"/cinderblock.keyring >/dev/null
fi
echo "CEPH_CONF=$C"
