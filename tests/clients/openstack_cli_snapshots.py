"""Scenario: the unmodified `openstack` CLI (`--os-auth-type none`) takes a snapshot of a volume
(`volume snapshot create --volume v1 s1`), creates a volume from it
(`volume create --snapshot s1 v2`), sets and unsets volume and snapshot properties (metadata),
extends a volume, and deletes everything, addressing resources by name as a person would.
"""

import uuid

from clientlib import check, fail, main, parse_args, poll, run, run_json, step, venv_bin


def props(obj, key="properties"):
    """The metadata of a `show -f json` reply: a dict, or the `k='v', …` text older releases print."""
    p = obj.get(key)
    if p is None or p == "":
        return {}
    if isinstance(p, dict):
        return p
    out = {}
    for part in str(p).split(", "):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v.strip("'")
    return out


def scenario():
    args = parse_args(__doc__)
    base = [venv_bin("openstack"), "--os-auth-type", "none",
            "--os-endpoint", f"{args.endpoint}/v3/{args.project}"]

    def osc(*words):
        return run_json(base + list(words) + ["-f", "json"])

    def wait_status(kind, name, want):
        def probe():
            o = osc(*kind, "show", name)
            if o.get("status") == want:
                return o
            if str(o.get("status", "")).startswith("error"):
                fail(f"{' '.join(kind)} {name} went to {o.get('status')!r}: {o}")
            return ("pending", o.get("status"))
        return poll(f"{' '.join(kind)} {name} to become {want}", probe)

    def wait_gone(kind, name):
        def probe():
            r = run(base + list(kind) + ["show", name, "-f", "json"], expect_ok=False)
            if r.rc != 0:
                text = (r.out + r.err).lower()
                if any(m in text for m in ("no volume", "no snapshot", "not found", "404", "could not be found")):
                    return True
                fail(f"{' '.join(kind)} show {name} failed for another reason than not found:\n" + r.describe())
            return ("pending", r.out.strip()[:200])
        poll(f"{' '.join(kind)} {name} to disappear", probe)

    suffix = uuid.uuid4().hex[:8]
    v1, s1, v2 = f"osc-v1-{suffix}", f"osc-s1-{suffix}", f"osc-v2-{suffix}"

    step(f"volume create --size 1 {v1}")
    vol1 = osc("volume", "create", "--size", "1", v1)
    v1_id = vol1.get("id")
    check(v1_id, f"volume create printed no id: {vol1}")
    wait_status(["volume"], v1, "available")

    step(f"volume snapshot create --volume {v1} {s1}")
    snap = osc("volume", "snapshot", "create", "--volume", v1, "--description", "from the openstack CLI",
               "--property", "origin=osc", s1)
    s1_id = snap.get("id")
    check(s1_id, f"volume snapshot create printed no id: {snap}")
    check(snap.get("name") == s1, f"volume snapshot create: name {snap.get('name')!r}, expected {s1!r}")
    check(snap.get("volume_id") == v1_id, f"volume snapshot create: volume_id {snap.get('volume_id')!r}")
    shown = wait_status(["volume", "snapshot"], s1, "available")
    check(shown.get("id") == s1_id, f"volume snapshot show {s1}: id {shown.get('id')!r}")
    check(str(shown.get("size")) == "1", f"volume snapshot show: size {shown.get('size')!r}")
    check(shown.get("description") == "from the openstack CLI", f"volume snapshot show: {shown}")
    check(props(shown).get("origin") == "osc", f"volume snapshot show: properties {shown.get('properties')!r}")

    step("volume snapshot list")
    listed = osc("volume", "snapshot", "list")
    mine = [s for s in listed if s.get("ID") == s1_id]
    check(len(mine) == 1 and mine[0].get("Name") == s1 and mine[0].get("Status") == "available",
          f"volume snapshot list: expected {s1_id} available, got {listed}")
    listed = osc("volume", "snapshot", "list", "--volume", v1, "--long")
    check([s.get("ID") for s in listed] == [s1_id], f"volume snapshot list --volume {v1}: {listed}")

    step(f"volume snapshot set/unset --property on {s1}")
    r = run(base + ["volume", "snapshot", "set", "--property", "tier=gold", s1])
    check(r.out.strip() == "", f"volume snapshot set printed output:\n{r.describe()}")
    check(props(osc("volume", "snapshot", "show", s1)) == {"origin": "osc", "tier": "gold"},
          "volume snapshot set --property did not add tier=gold")
    run(base + ["volume", "snapshot", "unset", "--property", "origin", s1])
    check(props(osc("volume", "snapshot", "show", s1)) == {"tier": "gold"},
          "volume snapshot unset --property did not remove origin")

    step(f"volume create --snapshot {s1} {v2}")
    vol2 = osc("volume", "create", "--snapshot", s1, v2)
    v2_id = vol2.get("id")
    check(v2_id and v2_id != v1_id, f"volume create --snapshot printed {vol2}")
    shown2 = wait_status(["volume"], v2, "available")
    check(shown2.get("snapshot_id") == s1_id, f"volume show {v2}: snapshot_id {shown2.get('snapshot_id')!r}")
    check(str(shown2.get("size")) == "1", f"volume show {v2}: size {shown2.get('size')!r}")

    step(f"volume set --property k=v / unset --property k on {v1}")
    r = run(base + ["volume", "set", "--property", "k=v", "--property", "other=x", v1])
    check(r.out.strip() == "", f"volume set --property printed output:\n{r.describe()}")
    check(props(osc("volume", "show", v1)) == {"k": "v", "other": "x"},
          f"volume set --property: properties {osc('volume', 'show', v1).get('properties')!r}")
    r = run(base + ["volume", "unset", "--property", "k", v1])
    check(r.out.strip() == "", f"volume unset --property printed output:\n{r.describe()}")
    check(props(osc("volume", "show", v1)) == {"other": "x"}, "volume unset --property k did not remove k")

    step(f"volume set --size 2 {v1} (extend)")
    run(base + ["volume", "set", "--size", "2", v1])
    grown = wait_status(["volume"], v1, "available")
    check(str(grown.get("size")) == "2", f"after volume set --size 2: size {grown.get('size')!r}")

    step("volume delete v1 is refused while it has a snapshot")
    r = run(base + ["volume", "delete", v1], expect_ok=False)
    check(r.rc != 0, f"volume delete {v1} succeeded although it has snapshot {s1}")
    check(osc("volume", "show", v1).get("status") == "available", "a refused delete changed the status")

    step("delete everything")
    run(base + ["volume", "delete", v2])
    run(base + ["volume", "snapshot", "delete", s1])
    wait_gone(["volume", "snapshot"], s1_id)
    run(base + ["volume", "delete", v1])
    wait_gone(["volume"], v1_id)
    wait_gone(["volume"], v2_id)
    check(osc("volume", "snapshot", "list") == [], "volume snapshot list is not empty after the deletes")


if __name__ == "__main__":
    main(scenario)
