"""Helpers shared by the scenarios that drive the official Huawei EVS SDK (huaweicloudsdkevs):
the client, calls that turn an API error into a readable mismatch, and following a job."""

from clientlib import check, fail, poll

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException, SdkException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkevs.v2 import EvsClient, ShowJobRequest


def evs_client(endpoint, ak, sk, project):
    """An EvsClient on `endpoint` signing with `ak`/`sk` for `project` (10 s connect, 60 s read)."""
    config = HttpConfig.get_default_config()
    config.timeout = (10, 60)
    return (EvsClient.new_builder()
            .with_http_config(config)
            .with_credentials(BasicCredentials(ak, sk, project))
            .with_endpoint(endpoint)
            .build())


def call(what, fn, request):
    """Call the SDK; turn an unexpected API error into a readable mismatch."""
    try:
        return fn(request)
    except ClientRequestException as e:
        fail(f"{what}: HTTP {e.status_code} error_code={e.error_code!r} error_msg={e.error_msg!r} "
             f"request_id={e.request_id!r}")
    except SdkException as e:
        fail(f"{what}: {type(e).__name__}: {e}")


def wait_job(client, job_id, what):
    """Poll ShowJob until SUCCESS (a FAIL or an unknown status fails the scenario); the job."""
    def probe():
        job = call(f"ShowJob {job_id}", client.show_job, ShowJobRequest(job_id=job_id))
        if job.status == "SUCCESS":
            return job
        if job.status == "FAIL":
            fail(f"job {job_id} ({what}) failed: error_code={job.error_code!r} fail_reason={job.fail_reason!r}")
        check(job.status in ("INIT", "RUNNING"), f"job {job_id}: unknown status {job.status!r}")
        return ("pending", job.status)
    return poll(f"job {job_id} ({what}) to reach SUCCESS", probe)
