"""Scenario: the official Huawei Cloud EVS Python SDK (huaweicloudsdkevs, unmodified) against
cinderblock in `noauth` mode (the SDK still signs every request with AK/SK; the server ignores the
signature in that mode). It creates a batch of 3 disks, follows the job to SUCCESS, lists the disks
with filters and paging, shows, renames and deletes one, and checks that it disappears; then
makes a system disk from an image (`image_ref`) uploaded through cinderblock's image API.
"""

import json
import os
import subprocess
import tempfile
import urllib.request
import uuid

import hwlib
from hwlib import call
from clientlib import check, fail, main, parse_args, poll, step

from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkevs.v2 import (CreateVolumeOption, CreateVolumeRequest, CreateVolumeRequestBody,
                                  DeleteVolumeRequest, ListVolumesRequest,
                                  ShowVolumeRequest, UpdateVolumeOption,
                                  UpdateVolumeRequest, UpdateVolumeRequestBody)

AK = "CINDERBLOCKTESTAK0000"
SK = "ignored-in-noauth-mode"
COUNT = 3
SIZE_GB = 10


def scenario():
    args = parse_args(__doc__)
    client = hwlib.evs_client(args.endpoint, AK, SK, args.project)

    def wait_job(job_id, what):
        return hwlib.wait_job(client, job_id, what)

    def list_volumes(**filters):
        return call(f"ListVolumes {filters}", client.list_volumes, ListVolumesRequest(**filters))

    name = f"sdk-batch-{uuid.uuid4().hex[:8]}"
    metadata = {"purpose": "client-test"}

    step(f"CreateVolume count={COUNT} name={name} volume_type=SSD availability_zone=nova")
    body = CreateVolumeRequestBody(volume=CreateVolumeOption(
        availability_zone="nova", volume_type="SSD", size=SIZE_GB, count=COUNT, name=name,
        description="batch from the Huawei SDK", metadata=metadata))
    created = call("CreateVolume", client.create_volume, CreateVolumeRequest(body=body))
    check(created.job_id, f"CreateVolume: no job_id in {created}")
    ids = list(created.volume_ids or [])
    check(len(ids) == COUNT and len(set(ids)) == COUNT,
          f"CreateVolume: expected {COUNT} distinct volume_ids, got {created.volume_ids}")

    step(f"ShowJob {created.job_id} until SUCCESS")
    job = wait_job(created.job_id, "batch create")
    check(job.job_id == created.job_id, f"ShowJob: job_id {job.job_id!r}, expected {created.job_id!r}")
    check(job.job_type == "batchCreateVolume", f"ShowJob: job_type {job.job_type!r}, expected 'batchCreateVolume'")
    check(job.begin_time and job.end_time, f"ShowJob: begin_time {job.begin_time!r} / end_time {job.end_time!r} missing")
    check(job.entities is not None, "ShowJob: no entities")
    subs = job.entities.sub_jobs or []
    check(len(subs) == COUNT, f"ShowJob: expected {COUNT} sub_jobs, got {len(subs)}: {job.entities}")
    sub_ids = set()
    for sub in subs:
        check(sub.status == "SUCCESS", f"sub job {sub.job_id}: status {sub.status!r}, expected SUCCESS")
        check(sub.entities is not None and sub.entities.volume_id, f"sub job {sub.job_id}: no entities.volume_id")
        check(sub.entities.size in (None, SIZE_GB), f"sub job {sub.job_id}: size {sub.entities.size!r}")
        sub_ids.add(sub.entities.volume_id)
    check(sub_ids == set(ids), f"ShowJob: sub_jobs volume ids {sorted(sub_ids)} != created {sorted(ids)}")

    step("ListVolumes (no filter)")
    everything = list_volumes()
    check(everything.count == COUNT, f"ListVolumes: count {everything.count}, expected {COUNT}")
    by_id = {v.id: v for v in everything.volumes or []}
    check(set(by_id) == set(ids), f"ListVolumes: ids {sorted(by_id)}, expected {sorted(ids)}")
    names = sorted(v.name for v in by_id.values())
    expected_names = [f"{name}-{i:04d}" for i in range(COUNT)]
    check(names == expected_names, f"ListVolumes: names {names}, expected {expected_names}")
    for v in by_id.values():
        check(v.status == "available", f"volume {v.id}: status {v.status!r}, expected available")
        check(v.size == SIZE_GB, f"volume {v.id}: size {v.size!r}, expected {SIZE_GB}")
        check(v.volume_type == "SSD", f"volume {v.id}: volume_type {v.volume_type!r}, expected SSD")
        check(v.availability_zone == "nova", f"volume {v.id}: availability_zone {v.availability_zone!r}")

    step("ListVolumes status=available availability_zone=nova limit=2 sort_key=id sort_dir=asc")
    page1 = list_volumes(status="available", availability_zone="nova", limit=2, sort_key="id", sort_dir="asc")
    got1 = [v.id for v in page1.volumes or []]
    check(page1.count == COUNT, f"page 1: count {page1.count}, expected {COUNT} (count ignores paging)")
    check(got1 == sorted(ids)[:2], f"page 1: ids {got1}, expected {sorted(ids)[:2]}")
    check(page1.volumes_links, f"page 1: volumes_links missing although more disks follow")
    next_href = page1.volumes_links[0].href
    check(next_href and "marker=" in next_href, f"page 1: volumes_links href {next_href!r} has no marker")

    step(f"ListVolumes marker={got1[-1]} (page 2)")
    page2 = list_volumes(status="available", availability_zone="nova", limit=2, sort_key="id",
                         sort_dir="asc", marker=got1[-1])
    got2 = [v.id for v in page2.volumes or []]
    check(got2 == sorted(ids)[2:], f"page 2: ids {got2}, expected {sorted(ids)[2:]}")

    one = sorted(ids)[0]
    target_name = by_id[one].name
    step(f"ListVolumes name={target_name}")
    named = list_volumes(name=target_name)
    check([v.id for v in named.volumes or []] == [one] and named.count == 1,
          f"ListVolumes name={target_name}: expected only {one}, got count={named.count} "
          f"{[(v.id, v.name) for v in named.volumes or []]}")

    step("ListVolumes ids=[two of them]")
    two = sorted(ids)[1:]
    by_ids = list_volumes(ids="[" + ",".join(f"'{i}'" for i in two) + "]")
    check(sorted(v.id for v in by_ids.volumes or []) == two, f"ListVolumes ids: expected {two}, got "
          f"{[v.id for v in by_ids.volumes or []]}")

    step(f"ListVolumes metadata={json.dumps(metadata)}")
    by_meta = list_volumes(metadata=json.dumps(metadata))
    check(by_meta.count == COUNT, f"ListVolumes metadata filter: count {by_meta.count}, expected {COUNT}")
    no_meta = list_volumes(metadata=json.dumps({"purpose": "something-else"}))
    check(no_meta.count == 0 and not no_meta.volumes,
          f"ListVolumes metadata filter (no match): count {no_meta.count}, volumes {no_meta.volumes}")

    step("ListVolumes status=error (no match)")
    none = list_volumes(status="error")
    check(none.count == 0 and not none.volumes, f"ListVolumes status=error: expected nothing, got count={none.count}")

    step(f"ShowVolume {one}")
    vol = call(f"ShowVolume {one}", client.show_volume, ShowVolumeRequest(volume_id=one)).volume
    check(vol is not None, "ShowVolume: no volume in the reply")
    check(vol.id == one, f"ShowVolume: id {vol.id!r}, expected {one!r}")
    check(vol.name == target_name, f"ShowVolume: name {vol.name!r}, expected {target_name!r}")
    check(vol.size == SIZE_GB and vol.volume_type == "SSD" and vol.availability_zone == "nova",
          f"ShowVolume: size/type/az {vol.size!r}/{vol.volume_type!r}/{vol.availability_zone!r}")
    check(vol.status == "available", f"ShowVolume: status {vol.status!r}")
    check(vol.description == "batch from the Huawei SDK", f"ShowVolume: description {vol.description!r}")
    check(dict(vol.metadata or {}).get("purpose") == "client-test", f"ShowVolume: metadata {vol.metadata!r}")
    check(vol.os_vol_tenant_attrtenant_id == args.project,
          f"ShowVolume: os-vol-tenant-attr:tenant_id {vol.os_vol_tenant_attrtenant_id!r}, expected {args.project!r}")
    check(vol.service_type == "EVS", f"ShowVolume: service_type {vol.service_type!r}, expected 'EVS'")
    check(vol.multiattach is False, f"ShowVolume: multiattach {vol.multiattach!r}, expected False")
    check(vol.links, "ShowVolume: links missing")

    new_name = f"{name}-renamed"
    step(f"UpdateVolume {one} name={new_name}")
    upd = call(f"UpdateVolume {one}", client.update_volume, UpdateVolumeRequest(
        volume_id=one, body=UpdateVolumeRequestBody(volume=UpdateVolumeOption(name=new_name))))
    check(upd.name == new_name, f"UpdateVolume: reply name {upd.name!r}, expected {new_name!r}")
    vol = call(f"ShowVolume {one}", client.show_volume, ShowVolumeRequest(volume_id=one)).volume
    check(vol.name == new_name, f"ShowVolume after update: name {vol.name!r}, expected {new_name!r}")

    step(f"DeleteVolume {one}")
    deleted = call(f"DeleteVolume {one}", client.delete_volume, DeleteVolumeRequest(volume_id=one))
    check(deleted.job_id, f"DeleteVolume: no job_id in {deleted}")
    wait_job(deleted.job_id, f"delete {one}")

    step(f"ShowVolume {one} after delete -> 404 EVS.5404")
    try:
        client.show_volume(ShowVolumeRequest(volume_id=one))
        fail(f"ShowVolume {one} after its delete job succeeded: expected 404, got the volume")
    except ClientRequestException as e:
        check(e.status_code == 404 and e.error_code == "EVS.5404",
              f"ShowVolume after delete: HTTP {e.status_code} {e.error_code!r} {e.error_msg!r}, expected 404 EVS.5404")
        check(e.request_id, "ShowVolume after delete: the error carries no request id (X-Request-Id header)")
    after = list_volumes()
    check(after.count == COUNT - 1 and one not in {v.id for v in after.volumes or []},
          f"ListVolumes after delete: count {after.count}, ids {[v.id for v in after.volumes or []]}")

    step("DeleteVolume the other two (cleanup)")
    for vid in sorted(ids)[1:]:
        d = call(f"DeleteVolume {vid}", client.delete_volume, DeleteVolumeRequest(volume_id=vid))
        wait_job(d.job_id, f"delete {vid}")
    final = list_volumes()
    check(final.count == 0, f"ListVolumes after deleting all: count {final.count}")

    step("a system disk from an image: image uploaded through the image API, CreateVolume image_ref")
    image_id = upload_image(args.endpoint, args.project)
    body = CreateVolumeRequestBody(volume=CreateVolumeOption(
        availability_zone="nova", volume_type="SSD", size=SIZE_GB, name=f"{name}-sys", image_ref=image_id))
    created = call("CreateVolume image_ref", client.create_volume, CreateVolumeRequest(body=body))
    wait_job(created.job_id, "create from image")
    sys_id = (created.volume_ids or [None])[0]
    check(sys_id, f"CreateVolume image_ref: no volume id in {created}")
    vol = call(f"ShowVolume {sys_id}", client.show_volume, ShowVolumeRequest(volume_id=sys_id)).volume
    check(str(vol.bootable).lower() == "true", f"ShowVolume: bootable {vol.bootable!r} for a disk from an image")
    meta = dict(vol.volume_image_metadata or {})
    check(meta.get("image_id") == image_id, f"ShowVolume: volume_image_metadata {meta!r}, expected image_id {image_id}")
    d = call(f"DeleteVolume {sys_id}", client.delete_volume, DeleteVolumeRequest(volume_id=sys_id))
    wait_job(d.job_id, f"delete {sys_id}")
    glance(args.endpoint, args.project, "DELETE", f"/image/v2/images/{image_id}")


def glance(endpoint, project, method, path, body=None, ctype="application/json"):
    """One call to cinderblock's Glance v2 API (noauth: the project in X-Project-Id)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(f"{endpoint}{path}", data=data, method=method,
                                 headers={"X-Project-Id": project, "Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=60) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


def upload_image(endpoint, project):
    """A 64 MiB-virtual qcow2 made with qemu-img, uploaded; its id once active."""
    tmp = tempfile.mkdtemp(prefix="cb-hw-img-")
    path = os.path.join(tmp, "img.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "64M"], check=True)
    img = glance(endpoint, project, "POST", "/image/v2/images",
                 {"name": "sdk-image", "disk_format": "qcow2", "container_format": "bare"})
    with open(path, "rb") as f:
        glance(endpoint, project, "PUT", f"/image/v2/images/{img['id']}/file", f.read(), "application/octet-stream")
    shown = glance(endpoint, project, "GET", f"/image/v2/images/{img['id']}")
    check(shown["status"] == "active", f"image upload: status {shown['status']!r}")
    return img["id"]


if __name__ == "__main__":
    main(scenario)
