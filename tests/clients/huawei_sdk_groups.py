"""Scenario: the official Huawei Cloud EVS Python SDK (huaweicloudsdkevs, unmodified) takes a
snapshot group of two disks (CreateSnapshotGroup), shows, lists (with filters), counts and
renames it, tags it and lists and removes its tags, deletes it; drives the v5 standard snapshot
calls (create with tags, show, list, count, update, tags, chains, rollback, delete); the
auto-snapshot policy calls (create, show, list, count, update, associate, disassociate,
delete); and retypes a disk with RetypeVolume; every reply is parsed by the SDK's own models.

The daemon runs in this script's working directory with its file pool in ./pool, so the script
writes data straight into the disks' files and checks that the members hold it.
"""

import os
import uuid

import hwlib
from hwlib import call
from clientlib import check, fail, main, parse_args, poll, step

from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkevs.v2 import (BatchCreateSnapshotTagsRequest, BatchDeleteSnapshotTagsRequest,
                                  CinderUpdateSnapshotOptionV5, CountSnapshotChainsRequest, CountSnapshotsRequest,
                                  CreateStandardSnapshot, CreateStandardSnapshotRequest,
                                  CreateStandardSnapshotRequestBody, DeleteStandardSnapshotRequest,
                                  ListSnapshotChainsRequest, ListSnapshotsDetailsRequest, ListSnapshotTagsRequest,
                                  RollbackSnapshotRequestBodyNew, RollbackSnapshotRequestBodyV5,
                                  RollbackStandardSnapshotRequest, ShowStandardSnapshotRequest,
                                  UpdateSnapshotRequestBodyV5, UpdateStandardSnapshotRequest)
from huaweicloudsdkevs.v2 import (AssociateAutoSnapshotPolicyRequest, CountAutoSnapshotPoliciesRequest,
                                  CreateAutoSnapshotPolicyRequest, CreateSnapshotPolicy,
                                  CreateSnapshotPolicyRequestBody, DeleteAutoSnapshotPolicyRequest,
                                  DisassociateAutoSnapshotPolicyRequest, ListAutoSnapshotPolicyRequest,
                                  ShowAutoSnapshotPolicyRequest, UpdateAutoSnapshotPolicyRequest,
                                  UpdateSnapshotPolicy, UpdateSnapshotPolicyRequestBody)
from huaweicloudsdkevs.v2 import (BatchCreateResourceTagsRequestBody, BatchCreateSnapshotGroupTagRequest,
                                  BatchDeleteResourceTagsRequestBody, BatchDeleteSnapshotGroupTagRequest,
                                  CountSnapshotsGroupRequest, CreateResourceTag, CreateSnapshotGroupRequest,
                                  CreateSnapshotGroupRequestBody, CreateVolumeOption, CreateVolumeRequest,
                                  CreateVolumeRequestBody, DeleteResourceTag, DeleteSnapshotGroupRequest,
                                  DeleteVolumeRequest, ListSnapshotGroupRequest,
                                  ListSnapshotGroupTagsRequest, RetypeVolume, RetypeVolumeRequest,
                                  RetypeVolumeRequestBody, ShowSnapshotGroupRequest,
                                  ShowVolumeRequest, SnapshotGroup, UpdateSnapshotGroupRequest,
                                  UpdateSnapshotGroupRequestBody, UpdateSnapshotGroupResponseBody)

AK = "CINDERBLOCKTESTAK0000"
SK = "ignored-in-noauth-mode"
SIZE_GB = 10
MIB = 1 << 20
POOL = os.path.join(os.getcwd(), "pool")


def expect_error(what, fn, request, status, code):
    try:
        fn(request)
    except ClientRequestException as e:
        check(e.status_code == status and e.error_code == code,
              f"{what}: HTTP {e.status_code} {e.error_code!r}, expected {status} {code!r}")
        return
    fail(f"{what}: succeeded, expected HTTP {status} {code}")


def write_at(path, offset, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_at(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def scenario():
    args = parse_args(__doc__)
    client = hwlib.evs_client(args.endpoint, AK, SK, args.project)

    def wait_job(job_id, what):
        return hwlib.wait_job(client, job_id, what)

    def show_group(gid):
        return call(f"ShowSnapshotGroup {gid}", client.show_snapshot_group,
                    ShowSnapshotGroupRequest(snapshot_group_id=gid)).snapshot_group

    suffix = uuid.uuid4().hex[:8]
    step("CreateVolume (two SSD disks) and write a marker into each")
    created = call("CreateVolume", client.create_volume, CreateVolumeRequest(body=CreateVolumeRequestBody(
        volume=CreateVolumeOption(availability_zone="nova", volume_type="SSD", size=SIZE_GB,
                                  name=f"sdk-group-{suffix}", count=2))))
    vids = list(created.volume_ids)
    check(len(vids) == 2, f"CreateVolume count=2: ids {vids}")
    wait_job(created.job_id, "create")
    for i, vid in enumerate(vids):
        write_at(os.path.join(POOL, "volumes", f"{vid}.raw"), 3 * MIB, f"disk-{i}-marker".encode())

    step("CreateSnapshotGroup of both disks, with a tag")
    name = f"sdk-sg-{suffix}"
    r = call("CreateSnapshotGroup", client.create_snapshot_group, CreateSnapshotGroupRequest(
        body=CreateSnapshotGroupRequestBody(snapshot_group=SnapshotGroup(
            volume_ids=vids, name=name, description="from the Huawei SDK", tags={"env": "sdk"},
            instant_access=False, incremental=False))))
    gid = r.snapshot_group_id
    check(gid and r.job_id, f"CreateSnapshotGroup: reply {r}")
    wait_job(r.job_id, "snapshot group")
    g = show_group(gid)
    check(g.status == "available" and g.name == name and g.description == "from the Huawei SDK",
          f"ShowSnapshotGroup: {g}")
    check(dict(g.tags or {}) == {"env": "sdk"}, f"ShowSnapshotGroup: tags {g.tags!r}")
    check(g.project_id == args.project, f"ShowSnapshotGroup: project_id {g.project_id!r}")
    # The members hold what the disks held when the group was taken.
    snaps = [f for f in os.listdir(os.path.join(POOL, "snapshots")) if f.endswith(".raw")]
    check(len(snaps) == 2, f"the pool holds {len(snaps)} snapshot files, expected 2")
    markers = sorted(read_at(os.path.join(POOL, "snapshots", f), 3 * MIB, 13) for f in snaps)
    check(markers == [b"disk-0-marker", b"disk-1-marker"], f"member contents {markers}")

    step("ListSnapshotGroup (all, by name, by status, by tag, paged) and CountSnapshotsGroup")
    for what, req, want in [
        ("all", ListSnapshotGroupRequest(), 1),
        ("name", ListSnapshotGroupRequest(name=name), 1),
        ("other name", ListSnapshotGroupRequest(name="no-such-group"), 0),
        ("status=available", ListSnapshotGroupRequest(status="available"), 1),
        ("tag_key=env", ListSnapshotGroupRequest(tag_key="env"), 1),
        ("limit=1 offset=1", ListSnapshotGroupRequest(limit=1, offset=1), 0),
    ]:
        got = call(f"ListSnapshotGroup {what}", client.list_snapshot_group, req).snapshot_groups or []
        check(len(got) == want, f"ListSnapshotGroup {what}: {len(got)} groups, expected {want}")
    n = call("CountSnapshotsGroup", client.count_snapshots_group, CountSnapshotsGroupRequest()).count
    check(n == 1, f"CountSnapshotsGroup: {n}")
    n = call("CountSnapshotsGroup status=error", client.count_snapshots_group,
             CountSnapshotsGroupRequest(status="error")).count
    check(n == 0, f"CountSnapshotsGroup status=error: {n}")

    step("UpdateSnapshotGroup")
    upd = call("UpdateSnapshotGroup", client.update_snapshot_group, UpdateSnapshotGroupRequest(
        snapshot_group_id=gid, body=UpdateSnapshotGroupRequestBody(
            snapshot_group=UpdateSnapshotGroupResponseBody(name=f"{name}-renamed"))))
    check(upd.snapshot_group.name == f"{name}-renamed", f"UpdateSnapshotGroup: {upd}")

    step("BatchCreateSnapshotGroupTag, ListSnapshotGroupTags, BatchDeleteSnapshotGroupTag")
    call("BatchCreateSnapshotGroupTag", client.batch_create_snapshot_group_tag, BatchCreateSnapshotGroupTagRequest(
        snapshot_group_id=gid, body=BatchCreateResourceTagsRequestBody(tags=[CreateResourceTag(key="tier", value="gold")])))
    tags = call("ListSnapshotGroupTags", client.list_snapshot_group_tags, ListSnapshotGroupTagsRequest()).tags or []
    seen = {t.key: list(t.value or []) for t in tags}
    check(seen == {"env": ["sdk"], "tier": ["gold"]}, f"ListSnapshotGroupTags: {seen}")
    call("BatchDeleteSnapshotGroupTag", client.batch_delete_snapshot_group_tag, BatchDeleteSnapshotGroupTagRequest(
        snapshot_group_id=gid, body=BatchDeleteResourceTagsRequestBody(tags=[DeleteResourceTag(key="env")])))
    check(dict(show_group(gid).tags or {}) == {"tier": "gold"}, "tags after BatchDeleteSnapshotGroupTag")

    step("refused input: a group of an unknown disk, an unknown group")
    expect_error("CreateSnapshotGroup unknown disk", client.create_snapshot_group, CreateSnapshotGroupRequest(
        body=CreateSnapshotGroupRequestBody(snapshot_group=SnapshotGroup(volume_ids=[str(uuid.uuid4())]))),
        404, "EVS.5404")
    expect_error("ShowSnapshotGroup unknown", client.show_snapshot_group,
                 ShowSnapshotGroupRequest(snapshot_group_id=str(uuid.uuid4())), 404, "EVS.5404")

    step("DeleteSnapshotGroup")
    d = call("DeleteSnapshotGroup", client.delete_snapshot_group, DeleteSnapshotGroupRequest(snapshot_group_id=gid))
    check(d.job_id, f"DeleteSnapshotGroup: reply {d}")

    def gone():
        try:
            client.show_snapshot_group(ShowSnapshotGroupRequest(snapshot_group_id=gid))
        except ClientRequestException as e:
            if e.status_code == 404:
                return True
            raise
        return ("pending", "still there")
    poll(f"snapshot group {gid} to go away", gone)

    step("v5: CreateStandardSnapshot with a tag, ShowStandardSnapshot, ListSnapshotsDetails, CountSnapshots")
    path0 = os.path.join(POOL, "volumes", f"{vids[0]}.raw")
    cs = call("CreateStandardSnapshot", client.create_standard_snapshot, CreateStandardSnapshotRequest(
        body=CreateStandardSnapshotRequestBody(snapshot=CreateStandardSnapshot(
            volume_id=vids[0], name=f"sdk-v5-{suffix}", description="v5", tags={"k": "v"}, incremental=True))))
    check(cs.snapshot_id and cs.job_id, f"CreateStandardSnapshot: reply {cs}")
    wait_job(cs.job_id, "v5 snapshot")
    sid = cs.snapshot_id
    sv = call("ShowStandardSnapshot", client.show_standard_snapshot, ShowStandardSnapshotRequest(snapshot_id=sid)).snapshot
    check(sv.status == "available" and sv.volume_id == vids[0] and sv.size == SIZE_GB and dict(sv.tags or {}) == {"k": "v"},
          f"ShowStandardSnapshot: {sv}")
    check(sv.snapshot_type == "user" and sv.category == "standard", f"ShowStandardSnapshot: type/category {sv}")
    got = call("ListSnapshotsDetails", client.list_snapshots_details,
               ListSnapshotsDetailsRequest(volume_id=vids[0])).snapshots or []
    check([x.id for x in got] == [sid], f"ListSnapshotsDetails volume_id: {[x.id for x in got]}")
    got = call("ListSnapshotsDetails tag_key", client.list_snapshots_details,
               ListSnapshotsDetailsRequest(tag_key="k")).snapshots or []
    check([x.id for x in got] == [sid], f"ListSnapshotsDetails tag_key: {[x.id for x in got]}")
    n = call("CountSnapshots", client.count_snapshots, CountSnapshotsRequest(volume_id=vids[0])).count
    check(n == 1, f"CountSnapshots: {n}")

    step("v5: UpdateStandardSnapshot, snapshot tags, chains")
    up = call("UpdateStandardSnapshot", client.update_standard_snapshot, UpdateStandardSnapshotRequest(
        snapshot_id=sid, body=UpdateSnapshotRequestBodyV5(snapshot=CinderUpdateSnapshotOptionV5(name="v5-renamed"))))
    check(up.snapshot.name == "v5-renamed", f"UpdateStandardSnapshot: {up}")
    call("BatchCreateSnapshotTags", client.batch_create_snapshot_tags, BatchCreateSnapshotTagsRequest(
        snapshot_id=sid, body=BatchCreateResourceTagsRequestBody(tags=[CreateResourceTag(key="t2", value="x")])))
    tags = call("ListSnapshotTags", client.list_snapshot_tags, ListSnapshotTagsRequest()).tags or []
    check({t.key for t in tags} == {"k", "t2"}, f"ListSnapshotTags: {[t.key for t in tags]}")
    call("BatchDeleteSnapshotTags", client.batch_delete_snapshot_tags, BatchDeleteSnapshotTagsRequest(
        snapshot_id=sid, body=BatchDeleteResourceTagsRequestBody(tags=[DeleteResourceTag(key="t2")])))
    chains = call("ListSnapshotChains", client.list_snapshot_chains,
                  ListSnapshotChainsRequest(volume_id=vids[0])).snapshot_chains or []
    check(len(chains) == 1 and chains[0].snapshot_count == 1 and chains[0].volume_id == vids[0],
          f"ListSnapshotChains: {chains}")
    n = call("CountSnapshotChains", client.count_snapshot_chains, CountSnapshotChainsRequest()).count
    check(n == 1, f"CountSnapshotChains: {n}")

    step("v5: RollbackStandardSnapshot restores the data, DeleteStandardSnapshot")
    write_at(path0, 3 * MIB, b"overwritten!!")
    rb = call("RollbackStandardSnapshot", client.rollback_standard_snapshot, RollbackStandardSnapshotRequest(
        snapshot_id=sid, body=RollbackSnapshotRequestBodyV5(rollback=RollbackSnapshotRequestBodyNew(volume_id=vids[0]))))
    wait_job(rb.job_id, "v5 rollback")
    check(read_at(path0, 3 * MIB, 13) == b"disk-0-marker", "after RollbackStandardSnapshot the disk lost its data")
    d = call("DeleteStandardSnapshot", client.delete_standard_snapshot, DeleteStandardSnapshotRequest(snapshot_id=sid))
    wait_job(d.job_id, "v5 delete")

    step("auto-snapshot policies: create, show, list, count, update, associate, disassociate, delete")
    cp = call("CreateAutoSnapshotPolicy", client.create_auto_snapshot_policy, CreateAutoSnapshotPolicyRequest(
        body=CreateSnapshotPolicyRequestBody(snapshot_policy=CreateSnapshotPolicy(
            name=f"sdk-policy-{suffix}", repeat_weekdays=["1", "4"], time_points=["3"], retention_days=7,
            tags={"owner": "sdk"})))).snapshot_policy
    check(cp.id and cp.repeat_weekdays == ["1", "4"] and cp.time_points == ["3"] and cp.retention_days == 7,
          f"CreateAutoSnapshotPolicy: {cp}")
    pid = cp.id
    shown = call("ShowAutoSnapshotPolicy", client.show_auto_snapshot_policy,
                 ShowAutoSnapshotPolicyRequest(snapshot_policy_id=pid)).snapshot_policy
    check(shown.name == f"sdk-policy-{suffix}" and dict(shown.tags or {}) == {"owner": "sdk"},
          f"ShowAutoSnapshotPolicy: {shown}")
    listed = call("ListAutoSnapshotPolicy", client.list_auto_snapshot_policy,
                  ListAutoSnapshotPolicyRequest(name=f"sdk-policy-{suffix}")).snapshot_policies or []
    check([x.id for x in listed] == [pid], f"ListAutoSnapshotPolicy: {[x.id for x in listed]}")
    n = call("CountAutoSnapshotPolicies", client.count_auto_snapshot_policies,
             CountAutoSnapshotPoliciesRequest(tag_key="owner")).count
    check(n == 1, f"CountAutoSnapshotPolicies: {n}")
    up = call("UpdateAutoSnapshotPolicy", client.update_auto_snapshot_policy, UpdateAutoSnapshotPolicyRequest(
        snapshot_policy_id=pid, body=UpdateSnapshotPolicyRequestBody(snapshot_policy=UpdateSnapshotPolicy(
            repeat_interval_days=2, time_points=["1", "13"])))).snapshot_policy
    check(up.repeat_interval_days == 2 and up.time_points == ["1", "13"] and not up.repeat_weekdays,
          f"UpdateAutoSnapshotPolicy: {up}")
    call("AssociateAutoSnapshotPolicy", client.associate_auto_snapshot_policy,
         AssociateAutoSnapshotPolicyRequest(snapshot_policy_id=pid, body=vids))
    call("DisassociateAutoSnapshotPolicy", client.disassociate_auto_snapshot_policy,
         DisassociateAutoSnapshotPolicyRequest(snapshot_policy_id=pid, body=[vids[1]]))
    expect_error("DisassociateAutoSnapshotPolicy twice", client.disassociate_auto_snapshot_policy,
                 DisassociateAutoSnapshotPolicyRequest(snapshot_policy_id=pid, body=[vids[1]]), 400, "EVS.5400")
    call("DeleteAutoSnapshotPolicy", client.delete_auto_snapshot_policy,
         DeleteAutoSnapshotPolicyRequest(snapshot_policy_id=pid))
    expect_error("ShowAutoSnapshotPolicy after delete", client.show_auto_snapshot_policy,
                 ShowAutoSnapshotPolicyRequest(snapshot_policy_id=pid), 404, "EVS.5404")

    step("RetypeVolume SSD -> SAS")
    rt = call("RetypeVolume", client.retype_volume, RetypeVolumeRequest(
        volume_id=vids[0], body=RetypeVolumeRequestBody(os_retype=RetypeVolume(new_type="SAS"))))
    wait_job(rt.job_id, "retype")
    v = call("ShowVolume", client.show_volume, ShowVolumeRequest(volume_id=vids[0])).volume
    check(v.volume_type == "SAS", f"after RetypeVolume: volume_type {v.volume_type!r}")
    expect_error("RetypeVolume with iops", client.retype_volume, RetypeVolumeRequest(
        volume_id=vids[0], body=RetypeVolumeRequestBody(os_retype=RetypeVolume(new_type="SATA", iops=3000))),
        400, "EVS.5400")

    step("DeleteVolume both disks")
    for vid in vids:
        call(f"DeleteVolume {vid}", client.delete_volume, DeleteVolumeRequest(volume_id=vid))


if __name__ == "__main__":
    main(scenario)
