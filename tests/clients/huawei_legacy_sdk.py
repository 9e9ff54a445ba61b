"""Scenario: the legacy Huawei Cloud SDK (`huaweicloud-sdk-python` 1.0.28, unmodified, in its own
Python 3.9 venv) with password auth against cinderblock in `auth.mode = keystone`. It logs in
through `/identity/v3/auth/tokens`, finds its services in the token's catalog (`evs`, `evsv2.1`,
`volume`) and runs create_volume_ext (with bssParam), get_job, volumes (the detail list),
resize_volume_ext (with bssParam), get_volume and versions.

Python 3.9 compatible on purpose: the legacy SDK's keystoneauth1 3.4 needs an old interpreter.
"""

import argparse
import sys
import time

from openstack import connection

POLL_DEADLINE_S = 90.0


def fail(msg):
    print(f"MISMATCH: {msg}", flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def step(msg):
    print(f"--- {msg}", flush=True)


def wait_job(conn, job_id):
    deadline = time.monotonic() + POLL_DEADLINE_S
    while True:
        job = conn.evs.get_job(job_id)
        if job.status == "SUCCESS":
            return job
        check(job.status != "FAIL", f"job {job_id} failed: {job}")
        check(time.monotonic() < deadline, f"job {job_id} still {job.status}")
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--project", required=True, help="project id (the token's project)")
    ap.add_argument("--project-name", required=True)
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    args = ap.parse_args()

    step("password login through the catalog")
    conn = connection.Connection(
        auth_url=f"{args.endpoint}/identity/v3",
        project_name=args.project_name,
        username=args.username,
        password=args.password,
        user_domain_name="Default",
        project_domain_name="Default",
    )

    step("create_volume_ext (POST /v2.1/{p}/cloudvolumes with bssParam)")
    name = f"legacy-{int(time.time() * 1000) % 1000000}"
    created = conn.evs.create_volume_ext(
        volume={"name": name, "size": 1, "availability_zone": "nova", "volume_type": "SSD"},
        bssParam={"chargingMode": "postPaid"},
    )
    check(created.job_id, f"create_volume_ext gave no job_id: {created}")
    job = wait_job(conn, created.job_id)
    check(job.job_type == "createVolume", f"job type: {job}")
    vid = job.entities["volume_id"]

    step("volumes (GET /v2/{p}/cloudvolumes/detail)")
    pages = list(conn.evs.volumes(name=name))
    found = [v for page in pages for v in (page.volumes or [])]
    check(len(found) == 1 and found[0]["id"] == vid, f"volumes(name={name}): {pages}")
    check(found[0]["status"] == "available" and found[0]["size"] == 1, f"listed disk: {found[0]}")

    step("resize_volume_ext (POST /v2.1/{p}/cloudvolumes/{id}/action with bssParam)")
    resized = conn.evs.resize_volume_ext(vid, extend={"new_size": 2}, bssParam={"isAutoPay": "true"})
    check(resized.job_id, f"resize_volume_ext gave no job_id: {resized}")
    wait_job(conn, resized.job_id)
    shown = conn.evs.get_volume(vid)
    check(shown.size == 2, f"size after resize: {shown}")

    step("versions (GET / through the `volume` catalog entry)")
    versions = list(conn.evs.versions())
    ids = sorted(v.id for v in versions)
    check(ids == ["v1.0", "v2.0", "v3.0"], f"versions: {ids}")
    check(any(v.status == "CURRENT" and v.id == "v3.0" for v in versions), f"v3 not CURRENT: {versions}")
    print("legacy SDK scenario passed", flush=True)


if __name__ == "__main__":
    main()
