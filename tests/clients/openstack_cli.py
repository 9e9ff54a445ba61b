"""Scenario: the unmodified `openstack` CLI (python-openstackclient + openstacksdk) without an
identity service (`--os-auth-type none`, which sends `X-Auth-Token: notused`) creates, lists,
shows, renames and deletes a volume through the Cinder v3 API.
"""

import uuid

from clientlib import (Mismatch, check, fail, main, parse_args, poll, run, run_json, step,
                       venv_bin)

EXPECTED_TYPES = {"__DEFAULT__", "SSD", "SAS", "SATA"}


def scenario():
    args = parse_args(__doc__)
    base = [venv_bin("openstack"), "--os-auth-type", "none",
            "--os-endpoint", f"{args.endpoint}/v3/{args.project}"]

    def osc(*words):
        return run_json(base + list(words) + ["-f", "json"])

    suffix = uuid.uuid4().hex[:8]
    name, new_name = f"osc-vol-{suffix}", f"osc-renamed-{suffix}"

    step("volume type list")
    types = {t.get("Name") for t in osc("volume", "type", "list")}
    check(EXPECTED_TYPES <= types, f"volume type list: expected at least {sorted(EXPECTED_TYPES)}, got {sorted(types)}")

    step("availability zone list --volume")
    zones = osc("availability", "zone", "list", "--volume")
    names = {z.get("Zone Name") for z in zones}
    check("nova" in names, f"availability zone list --volume: expected zone 'nova', got {zones}")

    step(f"volume create --size 1 {name}")
    created = osc("volume", "create", "--size", "1", name)
    vol_id = created.get("id")
    check(vol_id, f"volume create printed no id: {created}")
    check(created.get("name") == name, f"volume create: name {created.get('name')!r}, expected {name!r}")
    check(str(created.get("size")) == "1", f"volume create: size {created.get('size')!r}, expected 1")
    check(created.get("status") in ("creating", "available"),
          f"volume create: status {created.get('status')!r}, expected creating or available")

    def available():
        v = osc("volume", "show", vol_id)
        if v.get("status") == "available":
            return v
        if v.get("status") in ("error", "deleting", "error_deleting"):
            fail(f"volume {vol_id} went to status {v.get('status')!r} instead of available: {v}")
        return ("pending", v.get("status"))

    step(f"poll volume show {vol_id} until available")
    shown = poll(f"volume {vol_id} to become available", available)
    check(shown.get("id") == vol_id, f"volume show: id {shown.get('id')!r}, expected {vol_id!r}")
    check(shown.get("name") == name, f"volume show: name {shown.get('name')!r}, expected {name!r}")
    check(str(shown.get("size")) == "1", f"volume show: size {shown.get('size')!r}, expected 1")
    check(shown.get("availability_zone") == "nova",
          f"volume show: availability_zone {shown.get('availability_zone')!r}, expected 'nova'")
    check(shown.get("type") in EXPECTED_TYPES, f"volume show: type {shown.get('type')!r} not one of {sorted(EXPECTED_TYPES)}")

    step("volume list")
    listed = osc("volume", "list")
    mine = [v for v in listed if v.get("ID") == vol_id]
    check(len(mine) == 1, f"volume list: expected {vol_id} once, got {listed}")
    check(mine[0].get("Name") == name and mine[0].get("Status") == "available" and str(mine[0].get("Size")) == "1",
          f"volume list: row for {vol_id} is {mine[0]}, expected name {name!r}, status available, size 1")

    step(f"volume list --name {name} --long")
    listed = osc("volume", "list", "--name", name, "--long")
    check([v.get("ID") for v in listed] == [vol_id], f"volume list --name {name}: expected only {vol_id}, got {listed}")

    step(f"volume show {name} (lookup by name)")
    by_name = osc("volume", "show", name)
    check(by_name.get("id") == vol_id, f"volume show {name}: id {by_name.get('id')!r}, expected {vol_id!r}")

    step(f"volume set --name {new_name} --description ... {vol_id}")
    r = run(base + ["volume", "set", "--name", new_name, "--description", "renamed by the openstack CLI", vol_id])
    check(r.out.strip() == "", f"volume set printed unexpected output:\n{r.describe()}")
    renamed = osc("volume", "show", vol_id)
    check(renamed.get("name") == new_name, f"after volume set: name {renamed.get('name')!r}, expected {new_name!r}")
    check(renamed.get("description") == "renamed by the openstack CLI",
          f"after volume set: description {renamed.get('description')!r}")
    check(renamed.get("status") == "available", f"after volume set: status {renamed.get('status')!r}")
    old = osc("volume", "list", "--name", name)
    check(old == [], f"volume list --name {name} after rename: expected nothing, got {old}")

    step(f"volume delete {vol_id}")
    r = run(base + ["volume", "delete", vol_id])
    check(r.out.strip() == "", f"volume delete printed unexpected output:\n{r.describe()}")

    def gone():
        r = run(base + ["volume", "show", vol_id, "-f", "json"], expect_ok=False)
        if r.rc != 0:
            text = (r.out + r.err).lower()
            if any(m in text for m in ("no volume with a name or id", "no volume found", "not found", "404")):
                return True
            fail("volume show after delete failed for another reason than not found:\n" + r.describe())
        return ("pending", r.out.strip()[:200])

    step(f"poll volume show {vol_id} until it is gone")
    poll(f"volume {vol_id} to disappear", gone)
    listed = osc("volume", "list")
    check(all(v.get("ID") != vol_id for v in listed), f"volume list after delete still has {vol_id}: {listed}")


if __name__ == "__main__":
    main(scenario)
