"""Scenario: the official Huawei Cloud EVS Python SDK (huaweicloudsdkevs, unmodified) with a real
AK/SK credential made by `cinderblock admin credential create`, against cinderblock in
`auth.mode = keystone`. Signed requests pass (create, job, list, show, delete); a wrong SK or an
unknown AK is refused with 401 EVS.5401, a project the credential's owner has no role in with
400 Common.0018 — as the SDK reports them (`ClientRequestException.error_code`).
"""

import argparse
import uuid

from clientlib import check, fail, main, poll, step

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException, SdkException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkevs.v2 import (CreateVolumeOption, CreateVolumeRequest, CreateVolumeRequestBody,
                                  DeleteVolumeRequest, EvsClient, ListVolumesRequest,
                                  ShowJobRequest, ShowVolumeRequest)


def parse():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--project", required=True, help="project id of the credential")
    ap.add_argument("--ak", required=True)
    ap.add_argument("--sk", required=True)
    ap.add_argument("--other-project", required=True, help="a project the owner has no role in")
    return ap.parse_args()


def scenario():
    args = parse()

    def client(ak, sk, project):
        config = HttpConfig.get_default_config()
        config.timeout = (10, 60)
        return (EvsClient.new_builder()
                .with_http_config(config)
                .with_credentials(BasicCredentials(ak, sk, project))
                .with_endpoint(args.endpoint)
                .build())

    good = client(args.ak, args.sk, args.project)

    def call(what, fn, request):
        try:
            return fn(request)
        except ClientRequestException as e:
            fail(f"{what}: HTTP {e.status_code} error_code={e.error_code!r} error_msg={e.error_msg!r}")
        except SdkException as e:
            fail(f"{what}: {type(e).__name__}: {e}")

    def refused(what, c, status, code):
        try:
            c.list_volumes(ListVolumesRequest())
        except ClientRequestException as e:
            check(e.status_code == status and e.error_code == code,
                  f"{what}: HTTP {e.status_code} {e.error_code!r} {e.error_msg!r}, expected {status} {code}")
            check(e.error_msg, f"{what}: no error message")
            check(e.request_id, f"{what}: no request id")
            return
        fail(f"{what}: the request was accepted")

    def wait_job(job_id):
        def probe():
            job = call(f"ShowJob {job_id}", good.show_job, ShowJobRequest(job_id=job_id))
            if job.status == "SUCCESS":
                return job
            if job.status == "FAIL":
                fail(f"job {job_id} failed: {job.fail_reason!r}")
            return ("pending", job.status)
        return poll(f"job {job_id}", probe)

    name = f"aksk-{uuid.uuid4().hex[:8]}"
    step(f"CreateVolume {name} (signed)")
    created = call("CreateVolume", good.create_volume, CreateVolumeRequest(body=CreateVolumeRequestBody(
        volume=CreateVolumeOption(availability_zone="nova", volume_type="SSD", size=1, name=name))))
    check(created.job_id and len(created.volume_ids or []) == 1, f"CreateVolume: {created}")
    vol_id = created.volume_ids[0]
    wait_job(created.job_id)

    step("ListVolumes / ShowVolume (signed, with a query string)")
    listed = call("ListVolumes", good.list_volumes, ListVolumesRequest(name=name, limit=10))
    check([v.id for v in listed.volumes or []] == [vol_id], f"ListVolumes name={name}: {listed}")
    shown = call("ShowVolume", good.show_volume, ShowVolumeRequest(volume_id=vol_id)).volume
    check(shown.id == vol_id and shown.os_vol_tenant_attrtenant_id == args.project, f"ShowVolume: {shown}")

    step("a wrong SK is refused with EVS.5401")
    refused("wrong SK", client(args.ak, args.sk + "x", args.project), 401, "EVS.5401")
    step("an unknown AK is refused with EVS.5401")
    refused("unknown AK", client("UNKNOWNAK00000000000", args.sk, args.project), 401, "EVS.5401")
    step("a project of someone else is refused with Common.0018")
    refused("other project", client(args.ak, args.sk, args.other_project), 400, "Common.0018")

    step(f"DeleteVolume {vol_id} (signed)")
    deleted = call("DeleteVolume", good.delete_volume, DeleteVolumeRequest(volume_id=vol_id))
    wait_job(deleted.job_id)
    after = call("ListVolumes", good.list_volumes, ListVolumesRequest(name=name))
    check(not after.volumes, f"ListVolumes after delete: {after}")


if __name__ == "__main__":
    main(scenario)
