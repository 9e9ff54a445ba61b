"""Scenario: the official Huawei Cloud EVS SDK (huaweicloudsdkevs, unmodified) on the parts of the
reference that issue 11 A made whole, every answer parsed by the SDK's own models:

- CreateVolume with every field of CreateVolumeRequestBody (bssParam, server_id,
  OS-SCH-HNT:scheduler_hints, tags, enterprise_project_id, iops, throughput) and ShowVolume's
  Iops/Throughput/attachments; ListVolumes by server_id, enterprise_project_id, not_metadata;
- refusals as the SDK reports them (prePaid billing EVS.2108, unknown pool, bad tags);
- ResizeVolume with BssParamForResizeVolume; ShowJob of an unknown job (Common.0011);
- ListVolumeTags; the Cinder-style calls: CinderListAvailabilityZones, CinderListVolumeTypes,
  CinderListQuotas, and the transfer lifecycle (create, list, show, accept by another project,
  and a second one deleted);
- ListVersions and ShowVersion.
"""

import json
import uuid

import hwlib
from hwlib import call
from clientlib import check, fail, main, parse_args, poll, step

from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkevs.v2 import (
    BssParamForCreateVolume, BssParamForResizeVolume, CinderAcceptVolumeTransferOption,
    CinderAcceptVolumeTransferRequest, CinderAcceptVolumeTransferRequestBody,
    CinderCreateVolumeTransferRequest, CinderCreateVolumeTransferRequestBody,
    CinderDeleteVolumeTransferRequest, CinderListAvailabilityZonesRequest, CinderListQuotasRequest,
    CinderListVolumeTransfersRequest, CinderListVolumeTypesRequest, CinderShowVolumeTransferRequest,
    CreateVolumeOption, CreateVolumeRequest, CreateVolumeRequestBody, CreateVolumeSchedulerHints,
    CreateVolumeTransferOption, DeleteVolumeRequest, ListVersionsRequest,
    ListVolumesRequest, ListVolumeTagsRequest, OsExtend, ResizeVolumeRequest, ResizeVolumeRequestBody,
    ShowJobRequest, ShowVersionRequest, ShowVolumeRequest)

AK = "CINDERBLOCKTESTAK0000"
SK = "ignored-in-noauth-mode"


def refused(what, fn, request, status, code):
    try:
        got = fn(request)
    except ClientRequestException as e:
        check(e.status_code == status and e.error_code == code,
              f"{what}: expected {status} {code}, got {e.status_code} {e.error_code!r} ({e.error_msg!r})")
        return
    fail(f"{what}: expected {status} {code}, but it succeeded: {got}")


def client_for(endpoint, project):
    return hwlib.evs_client(endpoint, AK, SK, project)


def scenario():
    args = parse_args(__doc__)
    client = client_for(args.endpoint, args.project)
    other_project = uuid.uuid4().hex
    other = client_for(args.endpoint, other_project)

    def wait_job(job_id, what):
        return hwlib.wait_job(client, job_id, what)

    def create(what, body):
        created = call(what, client.create_volume, CreateVolumeRequest(body=body))
        wait_job(created.job_id, what)
        return created.volume_ids[0]

    def show(vid):
        return call(f"ShowVolume {vid}", client.show_volume, ShowVolumeRequest(volume_id=vid)).volume

    def ids(**filters):
        r = call(f"ListVolumes {filters}", client.list_volumes, ListVolumesRequest(**filters))
        return sorted(v.id for v in r.volumes)

    ep = str(uuid.uuid4())
    server = str(uuid.uuid4())
    step("CreateVolume with every field of CreateVolumeRequestBody")
    full = create("CreateVolume (full)", CreateVolumeRequestBody(
        bss_param=BssParamForCreateVolume(charging_mode="postPaid", is_auto_pay="true"),
        server_id=server,
        os_sch_hn_tscheduler_hints=CreateVolumeSchedulerHints(dedicated_storage_id="default"),
        volume=CreateVolumeOption(
            availability_zone="nova", volume_type="SSD", size=10, name="sdk-full",
            tags={"env": "prod"}, enterprise_project_id=ep, iops=3000, throughput=125,
            metadata={"tier": "gold"})))
    v = show(full)
    check(v.tags == {"env": "prod"}, f"tags: {v.tags}")
    check(v.enterprise_project_id == ep, f"enterprise_project_id: {v.enterprise_project_id}")
    check(v.iops is not None and v.iops.total_val == 3000, f"iops: {v.iops}")
    check(v.throughput is not None and v.throughput.total_val == 125, f"throughput: {v.throughput}")
    check(v.dedicated_storage_id == "default", f"dedicated_storage_id: {v.dedicated_storage_id}")
    check(v.status == "in-use" and v.attachments and v.attachments[0].server_id == server,
          f"server attachment: {v.status} {v.attachments}")
    check(isinstance(v.serial_number, str) and v.shareable == "false", f"view fields: {v}")

    plain = create("CreateVolume (plain)", CreateVolumeRequestBody(volume=CreateVolumeOption(
        availability_zone="nova", volume_type="SSD", size=10, name="sdk-plain", metadata={"tier": "bronze"})))

    step("ListVolumes by server_id, enterprise_project_id, not_metadata")
    check(ids(server_id=server) == [full], "server_id filter")
    check(ids(enterprise_project_id=ep) == [full], "enterprise_project_id filter")
    check(ids(not_metadata=json.dumps({"tier": "gold"})) == [plain], "not_metadata filter")

    step("refusals as the SDK reports them")
    refused("prePaid", client.create_volume, CreateVolumeRequest(body=CreateVolumeRequestBody(
        bss_param=BssParamForCreateVolume(charging_mode="prePaid", period_type="month", period_num=1),
        volume=CreateVolumeOption(availability_zone="nova", volume_type="SSD", size=10))), 400, "EVS.2108")
    refused("unknown pool", client.create_volume, CreateVolumeRequest(body=CreateVolumeRequestBody(
        os_sch_hn_tscheduler_hints=CreateVolumeSchedulerHints(dedicated_storage_id="no-such-pool"),
        volume=CreateVolumeOption(availability_zone="nova", volume_type="SSD", size=10))), 400, "EVS.5400")
    refused("eleven tags", client.create_volume, CreateVolumeRequest(body=CreateVolumeRequestBody(
        volume=CreateVolumeOption(availability_zone="nova", volume_type="SSD", size=10,
                                  tags={f"k{i}": "v" for i in range(11)}))), 400, "EVS.5400")
    refused("unknown job", client.show_job, ShowJobRequest(job_id=uuid.uuid4().hex), 400, "Common.0011")

    step("ResizeVolume with bssParam")
    r = call("ResizeVolume", client.resize_volume, ResizeVolumeRequest(volume_id=plain, body=ResizeVolumeRequestBody(
        bss_param=BssParamForResizeVolume(is_auto_pay="true"), os_extend=OsExtend(new_size=12))))
    wait_job(r.job_id, "resize")
    check(show(plain).size == 12, "size after resize")

    step("ListVolumeTags")
    tags = call("ListVolumeTags", client.list_volume_tags, ListVolumeTagsRequest())
    check(tags.tags.get("env") == ["prod"], f"ListVolumeTags: {tags}")

    step("CinderListAvailabilityZones, CinderListVolumeTypes, CinderListQuotas")
    zones = call("zones", client.cinder_list_availability_zones, CinderListAvailabilityZonesRequest())
    check(any(z.zone_name == "nova" and z.zone_state.available for z in zones.availability_zone_info), f"{zones}")
    types = call("types", client.cinder_list_volume_types, CinderListVolumeTypesRequest())
    check({"SSD", "SAS"} <= {t.name for t in types.volume_types}, f"{types}")
    quotas = call("quotas", client.cinder_list_quotas,
                  CinderListQuotasRequest(target_project_id=args.project, usage="True"))
    check(quotas.quota_set is not None and quotas.quota_set.volumes.in_use >= 2, f"quotas: {quotas}")

    step("Cinder transfers: create, list, show, accept by another project; another created and deleted")
    t = call("CinderCreateVolumeTransfer", client.cinder_create_volume_transfer, CinderCreateVolumeTransferRequest(
        body=CinderCreateVolumeTransferRequestBody(transfer=CreateVolumeTransferOption(name="move", volume_id=plain))))
    check(t.transfer.auth_key and t.transfer.volume_id == plain, f"transfer: {t}")
    listed = call("CinderListVolumeTransfers", client.cinder_list_volume_transfers, CinderListVolumeTransfersRequest())
    check([x.id for x in listed.transfers] == [t.transfer.id], f"transfers: {listed}")
    shown = call("CinderShowVolumeTransfer", client.cinder_show_volume_transfer,
                 CinderShowVolumeTransferRequest(transfer_id=t.transfer.id))
    check(shown.transfer.name == "move", f"show transfer: {shown}")
    accepted = call("CinderAcceptVolumeTransfer", other.cinder_accept_volume_transfer,
                    CinderAcceptVolumeTransferRequest(transfer_id=t.transfer.id,
                                                      body=CinderAcceptVolumeTransferRequestBody(
                                                          accept=CinderAcceptVolumeTransferOption(
                                                              auth_key=t.transfer.auth_key))))
    check(accepted.transfer.volume_id == plain, f"accept: {accepted}")
    check(call("ShowVolume (new owner)", other.show_volume, ShowVolumeRequest(volume_id=plain)).volume.id == plain,
          "the other project owns the disk")
    spare = create("CreateVolume (spare)", CreateVolumeRequestBody(volume=CreateVolumeOption(
        availability_zone="nova", volume_type="SAS", size=10, name="sdk-spare")))
    t2 = call("CinderCreateVolumeTransfer 2", client.cinder_create_volume_transfer, CinderCreateVolumeTransferRequest(
        body=CinderCreateVolumeTransferRequestBody(transfer=CreateVolumeTransferOption(name="keep", volume_id=spare))))
    call("CinderDeleteVolumeTransfer", client.cinder_delete_volume_transfer,
         CinderDeleteVolumeTransferRequest(transfer_id=t2.transfer.id))
    check(show(spare).status == "available", "a deleted transfer gives the disk back")

    step("ListVersions, ShowVersion")
    versions = call("ListVersions", client.list_versions, ListVersionsRequest())
    check(sorted(x.id for x in versions.versions) == ["v1.0", "v2.0", "v3.0"], f"versions: {versions}")
    one = call("ShowVersion v2", client.show_version, ShowVersionRequest(version="v2"))
    check([x.id for x in one.versions] == ["v2.0"], f"ShowVersion: {one}")

    step("DeleteVolume of the spare disk")
    d = call("DeleteVolume", client.delete_volume, DeleteVolumeRequest(volume_id=spare))
    wait_job(d.job_id, "delete")


if __name__ == "__main__":
    main(scenario)
