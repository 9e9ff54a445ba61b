"""Scenario: the unmodified `cinder` CLI (python-cinderclient) in `noauth` mode (it sends
`X-Auth-Token: admin:<project>`) creates, lists, shows, renames and deletes a volume through the
Cinder v3 API, and reads volume types, availability zones and quota usage.
"""

import uuid

from clientlib import (check, fail, main, parse_args, parse_property_table, parse_table, poll, run,
                       step, venv_bin)

EXPECTED_TYPES = {"__DEFAULT__", "SSD", "SAS", "SATA"}


def scenario():
    args = parse_args(__doc__)
    base = [venv_bin("cinder"), "--os-auth-type", "noauth", "--os-user-id", "admin",
            "--os-project-id", args.project, "--os-endpoint", f"{args.endpoint}/v3/{args.project}"]

    def cinder(*words, expect_ok=True):
        return run(base + list(words), expect_ok=expect_ok)

    def show(ref):
        return parse_property_table(cinder("show", ref).out)

    suffix = uuid.uuid4().hex[:8]
    name, new_name = f"cinder-vol-{suffix}", f"cinder-renamed-{suffix}"

    step("type-list")
    types = {row.get("Name") for row in parse_table(cinder("type-list").out)}
    check(EXPECTED_TYPES <= types, f"type-list: expected at least {sorted(EXPECTED_TYPES)}, got {sorted(types)}")

    step("availability-zone-list")
    zones = parse_table(cinder("availability-zone-list").out)
    check(any(z.get("Name") == "nova" and z.get("Status") == "available" for z in zones),
          f"availability-zone-list: expected zone nova available, got {zones}")

    step(f"create --name {name} 1")
    created = parse_property_table(cinder("create", "--name", name, "1").out)
    vol_id = created.get("id")
    check(vol_id, f"create printed no id: {created}")
    check(created.get("name") == name, f"create: name {created.get('name')!r}, expected {name!r}")
    check(created.get("size") == "1", f"create: size {created.get('size')!r}, expected 1")

    def available():
        v = show(vol_id)
        if v.get("status") == "available":
            return v
        if v.get("status") in ("error", "deleting", "error_deleting"):
            fail(f"volume {vol_id} went to status {v.get('status')!r} instead of available: {v}")
        return ("pending", v.get("status"))

    step(f"poll show {vol_id} until available")
    shown = poll(f"volume {vol_id} to become available", available)
    check(shown.get("name") == name, f"show: name {shown.get('name')!r}, expected {name!r}")
    check(shown.get("size") == "1", f"show: size {shown.get('size')!r}, expected 1")
    check(shown.get("availability_zone") == "nova",
          f"show: availability_zone {shown.get('availability_zone')!r}, expected nova")
    check(shown.get("volume_type") in EXPECTED_TYPES,
          f"show: volume_type {shown.get('volume_type')!r} not one of {sorted(EXPECTED_TYPES)}")
    check(shown.get("os-vol-tenant-attr:tenant_id") in (None, args.project),
          f"show: os-vol-tenant-attr:tenant_id {shown.get('os-vol-tenant-attr:tenant_id')!r}, expected {args.project!r}")

    step("list")
    rows = parse_table(cinder("list").out)
    mine = [r for r in rows if r.get("ID") == vol_id]
    check(len(mine) == 1, f"list: expected {vol_id} once, got {rows}")
    check(mine[0].get("Name") == name and mine[0].get("Status") == "available" and mine[0].get("Size") == "1",
          f"list: row for {vol_id} is {mine[0]}, expected name {name!r}, status available, size 1")

    step(f"list --name {name}")
    rows = parse_table(cinder("list", "--name", name).out)
    check([r.get("ID") for r in rows] == [vol_id], f"list --name {name}: expected only {vol_id}, got {rows}")

    step(f"show {name} (lookup by name)")
    by_name = show(name)
    check(by_name.get("id") == vol_id, f"show {name}: id {by_name.get('id')!r}, expected {vol_id!r}")

    step(f"quota-usage {args.project}")
    usage = {r.get("Type"): r for r in parse_table(cinder("quota-usage", args.project).out)}
    check("volumes" in usage and "gigabytes" in usage, f"quota-usage: no volumes/gigabytes rows: {usage}")
    check(usage["volumes"].get("In_use") == "1", f"quota-usage: volumes In_use {usage['volumes'].get('In_use')!r}, expected 1")
    check(usage["gigabytes"].get("In_use") == "1", f"quota-usage: gigabytes In_use {usage['gigabytes'].get('In_use')!r}, expected 1")

    step(f"rename {vol_id} {new_name} --description ...")
    cinder("rename", "--description", "renamed by the cinder CLI", vol_id, new_name)
    renamed = show(vol_id)
    check(renamed.get("name") == new_name, f"after rename: name {renamed.get('name')!r}, expected {new_name!r}")
    check(renamed.get("description") == "renamed by the cinder CLI",
          f"after rename: description {renamed.get('description')!r}")
    check(renamed.get("status") == "available", f"after rename: status {renamed.get('status')!r}")

    step(f"delete {vol_id}")
    r = cinder("delete", vol_id)
    check("Request to delete volume" in r.out or r.out.strip() == "",
          f"delete printed something unexpected:\n{r.describe()}")

    def gone():
        r = cinder("show", vol_id, expect_ok=False)
        if r.rc != 0:
            text = (r.out + r.err).lower()
            if any(m in text for m in ("no volume with a name or id", "no volume found", "not found", "404")):
                return True
            fail("show after delete failed for another reason than not found:\n" + r.describe())
        return ("pending", parse_property_table(r.out).get("status"))

    step(f"poll show {vol_id} until it is gone")
    poll(f"volume {vol_id} to disappear", gone)
    rows = parse_table(cinder("list").out)
    check(all(r.get("ID") != vol_id for r in rows), f"list after delete still has {vol_id}: {rows}")
    usage = {r.get("Type"): r for r in parse_table(cinder("quota-usage", args.project).out)}
    check(usage.get("volumes", {}).get("In_use") == "0",
          f"quota-usage after delete: volumes In_use {usage.get('volumes', {}).get('In_use')!r}, expected 0")


if __name__ == "__main__":
    main(scenario)
