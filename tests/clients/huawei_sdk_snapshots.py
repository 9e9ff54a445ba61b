"""Scenario: the official Huawei Cloud EVS Python SDK (huaweicloudsdkevs, unmodified) takes a
snapshot of a disk, shows and lists it (with filters), renames it, rolls the disk back to it
(renaming the disk, and checking the data through the disk's file in the daemon's pool), extends
the disk with ResizeVolume (a job), deletes the snapshot, tags the disk, lists its tags and
filters disks by tag, and deletes the disks.

The daemon runs in this script's working directory with its file pool in ./pool, so the script
writes data straight into the disk's file (`pool/volumes/<id>.raw`) as a guest would.
"""

import os
import uuid

import hwlib
from hwlib import call
from clientlib import check, fail, main, parse_args, poll, step

from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkevs.v2 import (BatchCreateVolumeTagsRequest, BatchCreateVolumeTagsRequestBody,
                                  BatchDeleteVolumeTagsRequest, BatchDeleteVolumeTagsRequestBody,
                                  ListVolumesByTagsRequest, ListVolumesByTagsRequestBody, ShowVolumeTagsRequest, Tag,
                                  TagsForListVolumes)
from huaweicloudsdkevs.v2 import (CreateSnapshotOption, CreateSnapshotRequest, CreateSnapshotRequestBody,
                                  CreateVolumeOption, CreateVolumeRequest, CreateVolumeRequestBody,
                                  DeleteSnapshotRequest, DeleteVolumeRequest, ListSnapshotsRequest,
                                  OsExtend, ResizeVolumeRequest, ResizeVolumeRequestBody, RollbackSnapshotOption,
                                  RollbackSnapshotRequest, RollbackSnapshotRequestBody,
                                  ShowSnapshotRequest, ShowVolumeRequest, UpdateSnapshotOption,
                                  UpdateSnapshotRequest, UpdateSnapshotRequestBody)

AK = "CINDERBLOCKTESTAK0000"
SK = "ignored-in-noauth-mode"
SIZE_GB = 10
MIB = 1 << 20
POOL = os.path.join(os.getcwd(), "pool")


def pattern(tag):
    """1 MiB of bytes that differ per tag."""
    seed = tag.encode() * (MIB // len(tag) + 1)
    return bytes(seed[:MIB])


def volume_file(vid):
    path = os.path.join(POOL, "volumes", f"{vid}.raw")
    check(os.path.exists(path), f"the disk's file {path} does not exist (is the daemon's pool in ./pool?)")
    return path


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

    def show_volume(vid):
        return call(f"ShowVolume {vid}", client.show_volume, ShowVolumeRequest(volume_id=vid)).volume

    def wait_volume(vid, want, what):
        def probe():
            v = show_volume(vid)
            if v.status == want:
                return v
            if v.status.startswith("error"):
                fail(f"disk {vid} went to {v.status!r} during {what}")
            return ("pending", v.status)
        return poll(f"disk {vid} to become {want} ({what})", probe)

    def show_snapshot(sid):
        return call(f"ShowSnapshot {sid}", client.show_snapshot, ShowSnapshotRequest(snapshot_id=sid)).snapshot

    def wait_snapshot(sid):
        def probe():
            s = show_snapshot(sid)
            if s.status == "available":
                return s
            if s.status.startswith("error"):
                fail(f"snapshot {sid} went to {s.status!r}")
            return ("pending", s.status)
        return poll(f"snapshot {sid} to become available", probe)

    suffix = uuid.uuid4().hex[:8]
    step("CreateVolume (one SSD disk) and wait for its job")
    created = call("CreateVolume", client.create_volume, CreateVolumeRequest(body=CreateVolumeRequestBody(
        volume=CreateVolumeOption(availability_zone="nova", volume_type="SSD", size=SIZE_GB,
                                  name=f"sdk-snap-src-{suffix}"))))
    vid = created.volume_ids[0]
    wait_job(created.job_id, "create")
    path = volume_file(vid)
    old = pattern("before-snapshot")
    write_at(path, 5 * MIB, old)

    step(f"CreateSnapshot of {vid}")
    name = f"sdk-snap-{suffix}"
    snap = call("CreateSnapshot", client.create_snapshot, CreateSnapshotRequest(body=CreateSnapshotRequestBody(
        snapshot=CreateSnapshotOption(volume_id=vid, name=name, description="from the Huawei SDK",
                                      metadata={"purpose": "client-test"}, force=False)))).snapshot
    check(snap is not None and snap.id, f"CreateSnapshot: no snapshot in the reply: {snap}")
    check(snap.volume_id == vid, f"CreateSnapshot: volume_id {snap.volume_id!r}, expected {vid!r}")
    check(snap.name == name, f"CreateSnapshot: name {snap.name!r}, expected {name!r}")
    sid = snap.id

    step(f"ShowSnapshot {sid} until available")
    shown = wait_snapshot(sid)
    check(shown.size == SIZE_GB, f"ShowSnapshot: size {shown.size!r}, expected {SIZE_GB}")
    check(shown.description == "from the Huawei SDK", f"ShowSnapshot: description {shown.description!r}")
    check(dict(shown.metadata or {}).get("purpose") == "client-test", f"ShowSnapshot: metadata {shown.metadata!r}")
    check(shown.volume_id == vid, f"ShowSnapshot: volume_id {shown.volume_id!r}")

    step("ListSnapshots (all, by volume_id, by name, by status, paged)")
    everything = call("ListSnapshots", client.list_snapshots, ListSnapshotsRequest())
    check(everything.count == 1 and [s.id for s in everything.snapshots or []] == [sid],
          f"ListSnapshots: count {everything.count}, ids {[s.id for s in everything.snapshots or []]}")
    listed = everything.snapshots[0]
    check(listed.status == "available" and listed.volume_id == vid and listed.size == SIZE_GB,
          f"ListSnapshots: entry {listed}")
    check(listed.os_extended_snapshot_attributesproject_id == args.project,
          f"ListSnapshots: project {listed.os_extended_snapshot_attributesproject_id!r}")
    check(listed.os_extended_snapshot_attributesprogress == "100%",
          f"ListSnapshots: progress {listed.os_extended_snapshot_attributesprogress!r}")
    for what, req, want in [
        ("volume_id", ListSnapshotsRequest(volume_id=vid), 1),
        ("name", ListSnapshotsRequest(name=name), 1),
        ("other name", ListSnapshotsRequest(name="no-such-snapshot"), 0),
        ("status=available", ListSnapshotsRequest(status="available"), 1),
        ("status=error", ListSnapshotsRequest(status="error"), 0),
        ("limit=1 offset=1", ListSnapshotsRequest(limit=1, offset=1), 1),
    ]:
        r = call(f"ListSnapshots {what}", client.list_snapshots, req)
        got = len(r.snapshots or [])
        expect_rows = 0 if what.startswith("limit") else want
        check(r.count == want and got == expect_rows,
              f"ListSnapshots {what}: count {r.count} with {got} rows, expected count {want}, {expect_rows} rows")

    step(f"UpdateSnapshot {sid}")
    renamed = f"{name}-renamed"
    upd = call("UpdateSnapshot", client.update_snapshot, UpdateSnapshotRequest(
        snapshot_id=sid, body=UpdateSnapshotRequestBody(snapshot=UpdateSnapshotOption(name=renamed))))
    check(upd.snapshot is not None and upd.snapshot.name == renamed,
          f"UpdateSnapshot: reply {upd}, expected snapshot.name {renamed!r}")
    check(show_snapshot(sid).name == renamed, "ShowSnapshot after UpdateSnapshot: old name")

    step("write new data to the disk, then RollbackSnapshot (renaming the disk)")
    write_at(path, 5 * MIB, pattern("after-snapshot"))
    write_at(path, 9 * MIB, pattern("also-after"))
    new_disk_name = f"sdk-rolled-back-{suffix}"
    rb = call("RollbackSnapshot", client.rollback_snapshot, RollbackSnapshotRequest(
        snapshot_id=sid, body=RollbackSnapshotRequestBody(
            rollback=RollbackSnapshotOption(volume_id=vid, name=new_disk_name))))
    check(rb.rollback is not None and rb.rollback.volume_id == vid,
          f"RollbackSnapshot: reply {rb}, expected rollback.volume_id {vid!r}")
    v = wait_volume(vid, "available", "rollback")
    check(v.name == new_disk_name, f"after the rollback: disk name {v.name!r}, expected {new_disk_name!r}")
    check(read_at(path, 5 * MIB, MIB) == old, "after the rollback the disk does not hold the snapshot's data")
    check(read_at(path, 9 * MIB, MIB) == bytes(MIB), "after the rollback data written after the snapshot is still there")
    check(show_snapshot(sid).status == "available", "the snapshot is not available after the rollback")

    step("RollbackSnapshot to another disk is refused")
    other = call("CreateVolume", client.create_volume, CreateVolumeRequest(body=CreateVolumeRequestBody(
        volume=CreateVolumeOption(availability_zone="nova", volume_type="SSD", size=SIZE_GB,
                                  name=f"sdk-other-{suffix}"))))
    wait_job(other.job_id, "create other")
    try:
        client.rollback_snapshot(RollbackSnapshotRequest(snapshot_id=sid, body=RollbackSnapshotRequestBody(
            rollback=RollbackSnapshotOption(volume_id=other.volume_ids[0]))))
        fail("RollbackSnapshot onto another disk succeeded")
    except ClientRequestException as e:
        check(e.status_code == 400 and (e.error_code or "").startswith("EVS."),
              f"RollbackSnapshot onto another disk: HTTP {e.status_code} {e.error_code!r} {e.error_msg!r}")

    step(f"ResizeVolume {vid} to {SIZE_GB + 5} GB (job)")
    resized = call("ResizeVolume", client.resize_volume, ResizeVolumeRequest(
        volume_id=vid, body=ResizeVolumeRequestBody(os_extend=OsExtend(new_size=SIZE_GB + 5))))
    check(resized.job_id, f"ResizeVolume: no job_id in {resized}")
    wait_job(resized.job_id, "extend")
    v = wait_volume(vid, "available", "extend")
    check(v.size == SIZE_GB + 5, f"after ResizeVolume: size {v.size!r}, expected {SIZE_GB + 5}")
    check(os.path.getsize(path) == (SIZE_GB + 5) << 30, f"after ResizeVolume: file size {os.path.getsize(path)}")
    check(read_at(path, 5 * MIB, MIB) == old, "ResizeVolume lost data")
    try:
        client.resize_volume(ResizeVolumeRequest(volume_id=vid, body=ResizeVolumeRequestBody(
            os_extend=OsExtend(new_size=SIZE_GB))))
        fail("ResizeVolume to a smaller size succeeded")
    except ClientRequestException as e:
        check(e.status_code == 400 and e.error_code == "EVS.1015",
              f"shrink: HTTP {e.status_code} {e.error_code!r}, expected 400 EVS.1015")

    step(f"DeleteSnapshot {sid}")
    call("DeleteSnapshot", client.delete_snapshot, DeleteSnapshotRequest(snapshot_id=sid))

    def snapshot_gone():
        try:
            s = client.show_snapshot(ShowSnapshotRequest(snapshot_id=sid)).snapshot
            return ("pending", s.status)
        except ClientRequestException as e:
            if e.status_code == 404:
                return True
            fail(f"ShowSnapshot after delete: HTTP {e.status_code} {e.error_code!r}")
    poll(f"snapshot {sid} to disappear", snapshot_gone)
    check(call("ListSnapshots", client.list_snapshots, ListSnapshotsRequest()).count == 0,
          "ListSnapshots after the delete is not empty")

    step(f"BatchCreateVolumeTags on {vid}, ShowVolumeTags, ListVolumesByTags")
    call("BatchCreateVolumeTags", client.batch_create_volume_tags, BatchCreateVolumeTagsRequest(
        volume_id=vid, body=BatchCreateVolumeTagsRequestBody(
            action="create", tags=[Tag(key="env", value="prod"), Tag(key="team", value="storage")])))
    shown_tags = call("ShowVolumeTags", client.show_volume_tags, ShowVolumeTagsRequest(volume_id=vid)).tags
    got = {t.key: t.value for t in shown_tags}
    check(got == {"env": "prod", "team": "storage"}, f"ShowVolumeTags: {got}")
    disk = call("ShowVolume", client.show_volume, ShowVolumeRequest(volume_id=vid)).volume
    check(disk.tags == {"env": "prod", "team": "storage"}, f"ShowVolume tags: {disk.tags}")
    found = call("ListVolumesByTags", client.list_volumes_by_tags, ListVolumesByTagsRequest(
        body=ListVolumesByTagsRequestBody(action="filter", tags=[TagsForListVolumes(key="env", values=["prod"])])))
    ids = [r.resource_id for r in found.resources]
    check(ids == [vid] and found.total_count == 1, f"ListVolumesByTags env=prod: {ids} total={found.total_count}")
    none = call("ListVolumesByTags", client.list_volumes_by_tags, ListVolumesByTagsRequest(
        body=ListVolumesByTagsRequestBody(action="filter", tags=[TagsForListVolumes(key="env", values=["dev"])])))
    check(none.total_count == 0 and not none.resources, f"ListVolumesByTags env=dev: {none.total_count}")
    call("BatchDeleteVolumeTags", client.batch_delete_volume_tags, BatchDeleteVolumeTagsRequest(
        volume_id=vid, body=BatchDeleteVolumeTagsRequestBody(action="delete", tags=[Tag(key="team", value="storage")])))
    left = call("ShowVolumeTags", client.show_volume_tags, ShowVolumeTagsRequest(volume_id=vid)).tags
    check([(t.key, t.value) for t in left] == [("env", "prod")], f"tags after delete: {left}")

    step("DeleteVolume both disks")
    for d in (vid, other.volume_ids[0]):
        job = call(f"DeleteVolume {d}", client.delete_volume, DeleteVolumeRequest(volume_id=d))
        wait_job(job.job_id, f"delete {d}")


if __name__ == "__main__":
    main(scenario)
