"""Scenario: the unmodified `openstack` and `cinder` CLIs with password authentication against
cinderblock's built-in Keystone (`OS_AUTH_URL=<endpoint>/identity/v3`, `auth.mode = keystone`).
The openstack CLI issues a token, creates, lists, shows and deletes a volume; the cinder CLI
lists it; a user of another project does not see it; a wrong password is refused.
"""

import argparse
import subprocess
import uuid

from clientlib import (COMMAND_TIMEOUT_S, Result, check, clean_env, fail, main, parse_table, poll,
                       step, venv_bin)
import json


def parse():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--project", required=True, help="id of the user's project")
    ap.add_argument("--project-name", required=True)
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--other-username", required=True)
    ap.add_argument("--other-project-name", required=True)
    return ap.parse_args()


def scenario():
    args = parse()

    def env_for(user, project, password):
        env = clean_env()
        env.update({
            "OS_AUTH_URL": f"{args.endpoint}/identity/v3",
            "OS_IDENTITY_API_VERSION": "3",
            "OS_AUTH_TYPE": "password",
            "OS_USERNAME": user,
            "OS_PASSWORD": password,
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

    me = env_for(args.username, args.project_name, args.password)
    other = env_for(args.other_username, args.other_project_name, args.password)
    osc = venv_bin("openstack")

    def osc_json(env, *words):
        r = run([osc] + list(words) + ["-f", "json"], env)
        try:
            return json.loads(r.out)
        except ValueError:
            fail("command did not print JSON:\n" + r.describe())

    step("token issue")
    tok = osc_json(me, "token", "issue")
    check(tok.get("project_id") == args.project, f"token issue: project_id {tok.get('project_id')!r}, expected {args.project!r}")
    check(tok.get("id") and tok.get("expires"), f"token issue: {tok}")

    name = f"pw-vol-{uuid.uuid4().hex[:8]}"
    step(f"volume create --size 1 {name}")
    created = osc_json(me, "volume", "create", "--size", "1", name)
    vol_id = created.get("id")
    check(vol_id, f"volume create printed no id: {created}")

    def available():
        v = osc_json(me, "volume", "show", vol_id)
        if v.get("status") == "available":
            return v
        if str(v.get("status")).startswith("error"):
            fail(f"volume {vol_id} went to {v.get('status')!r}")
        return ("pending", v.get("status"))

    step(f"poll volume show {vol_id} until available")
    shown = poll(f"volume {vol_id} to become available", available)
    check(shown.get("name") == name, f"volume show: name {shown.get('name')!r}")

    step("volume list")
    listed = osc_json(me, "volume", "list")
    check(any(v.get("ID") == vol_id for v in listed), f"volume list: {vol_id} missing from {listed}")

    step("cinder list (password auth)")
    r = run([venv_bin("cinder"), "list"], me)
    rows = parse_table(r.out)
    check(any(row.get("ID") == vol_id for row in rows), f"cinder list: {vol_id} missing:\n{r.describe()}")

    step("volume list as a user of another project")
    theirs = osc_json(other, "volume", "list")
    check(all(v.get("ID") != vol_id for v in theirs), f"another project sees {vol_id}: {theirs}")
    r = run([osc, "volume", "show", vol_id], other, expect_ok=False)
    check(r.rc != 0, f"another project can show {vol_id}:\n{r.describe()}")

    step("a wrong password is refused")
    r = run([osc, "volume", "list"], env_for(args.username, args.project_name, "wrong-" + args.password),
            expect_ok=False)
    text = (r.out + r.err).lower()
    check(r.rc != 0 and ("401" in text or "authenticat" in text), f"wrong password:\n{r.describe()}")

    step(f"volume delete {vol_id}")
    run([osc, "volume", "delete", vol_id], me)

    def gone():
        listed = osc_json(me, "volume", "list")
        if all(v.get("ID") != vol_id for v in listed):
            return True
        return ("pending", [v.get("Status") for v in listed if v.get("ID") == vol_id])

    step(f"poll volume list until {vol_id} is gone")
    poll(f"volume {vol_id} to disappear", gone)


if __name__ == "__main__":
    main(scenario)
