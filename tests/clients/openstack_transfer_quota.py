"""Scenario (issue 5): with password authentication against the built-in Keystone, the
`openstack` CLI moves a volume from project `demo` to project `other` with a transfer request,
and the `cinder` CLI of an admin shows and updates `other`'s quota (`quota-show`,
`quota-update`), which the daemon then enforces.
"""

import argparse
import json
import subprocess
import uuid

from clientlib import (COMMAND_TIMEOUT_S, Result, check, clean_env, fail, main, parse_property_table, poll,
                       step, venv_bin)


def parse():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--other-project", required=True, help="id of project `other`")
    return ap.parse_args()


def scenario():
    args = parse()

    def env_for(user, project):
        env = clean_env()
        env.update({
            "OS_AUTH_URL": f"{args.endpoint}/identity/v3",
            "OS_IDENTITY_API_VERSION": "3",
            "OS_AUTH_TYPE": "password",
            "OS_USERNAME": user,
            "OS_PASSWORD": args.password,
            "OS_PROJECT_NAME": project,
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default",
            "OS_INTERFACE": "public",
        })
        return env

    def run(argv, env, expect_ok=True):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=COMMAND_TIMEOUT_S,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            fail(f"command did not finish within {COMMAND_TIMEOUT_S}s: {' '.join(argv)}")
        r = Result(argv, p.returncode, p.stdout, p.stderr)
        if expect_ok and r.rc != 0:
            fail("command failed:\n" + r.describe())
        return r

    osc = venv_bin("openstack")
    cinder = venv_bin("cinder")
    demo = env_for("demo-user", "demo")
    other = env_for("other-user", "other")
    admin = env_for("admin-user", "demo")

    def osc_json(env, *words):
        r = run([osc] + list(words) + ["-f", "json"], env)
        try:
            return json.loads(r.out)
        except ValueError:
            fail("command did not print JSON:\n" + r.describe())

    name = f"gift-{uuid.uuid4().hex[:8]}"
    step(f"demo: volume create --size 1 {name}")
    vol_id = osc_json(demo, "volume", "create", "--size", "1", name).get("id")
    check(vol_id, "volume create printed no id")

    def available(env):
        def probe():
            v = osc_json(env, "volume", "show", vol_id)
            if v.get("status") == "available":
                return v
            if str(v.get("status")).startswith("error"):
                fail(f"volume {vol_id} went to {v.get('status')!r}")
            return ("pending", v.get("status"))
        return probe

    poll(f"volume {vol_id} to become available", available(demo))

    step("demo: volume transfer request create")
    t = osc_json(demo, "volume", "transfer", "request", "create", "--name", "to-other", vol_id)
    tid, key = t.get("id"), t.get("auth_key")
    check(tid and key, f"transfer request create: {t}")
    shown = osc_json(demo, "volume", "show", vol_id)
    check(shown.get("status") == "awaiting-transfer", f"status after transfer create: {shown.get('status')!r}")

    step("other: a wrong key is refused")
    r = run([osc, "volume", "transfer", "request", "accept", "--auth-key", "0" * 16, tid], other, expect_ok=False)
    check(r.rc != 0, f"accept with a wrong key succeeded:\n{r.describe()}")

    step("other: volume transfer request accept")
    run([osc, "volume", "transfer", "request", "accept", "--auth-key", key, tid], other)
    poll(f"volume {vol_id} available in project other", available(other))
    theirs = osc_json(other, "volume", "list")
    check(any(v.get("ID") == vol_id for v in theirs), f"other's list lacks {vol_id}: {theirs}")
    mine = osc_json(demo, "volume", "list")
    check(all(v.get("ID") != vol_id for v in mine), f"demo still lists {vol_id}: {mine}")

    step("admin: cinder quota-show / quota-update for project other")
    r = run([cinder, "quota-show", args.other_project], admin)
    before = parse_property_table(r.out)
    check("volumes" in before, f"quota-show has no volumes row:\n{r.describe()}")
    run([cinder, "quota-update", "--volumes", "1", args.other_project], admin)
    r = run([cinder, "quota-show", args.other_project], admin)
    after = parse_property_table(r.out)
    check(str(after.get("volumes")) == "1", f"quota-show after update: volumes = {after.get('volumes')!r}\n{r.describe()}")
    r = run([cinder, "quota-usage", args.other_project], admin)
    check("volumes" in r.out, f"quota-usage:\n{r.describe()}")

    step("other: a second volume is over quota")
    r = run([osc, "volume", "create", "--size", "1", f"{name}-2"], other, expect_ok=False)
    text = (r.out + r.err).lower()
    check(r.rc != 0 and ("413" in text or "quota" in text or "exceeded" in text), f"over quota create:\n{r.describe()}")

    step("other: a member may not change quotas")
    r = run([cinder, "quota-update", "--volumes", "10", args.other_project], other, expect_ok=False)
    check(r.rc != 0, f"a member updated quotas:\n{r.describe()}")


if __name__ == "__main__":
    main(scenario)
