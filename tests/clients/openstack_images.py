"""Scenario: the unmodified `openstack` CLI with password authentication against cinderblock's
built-in Keystone and image service: `image create --file` of a qcow2 made here with qemu-img
from a raw file with known data and holes, `image show/list/set/save` (saved bytes identical,
md5 checksum right), `volume create --image`, `volume show` (bootable, volume_image_metadata),
`image create --volume` (upload to image) and `qemu-img compare` of the result with the raw file,
then the volume attached over NBD (`os-initialize_connection`) compared with the raw file by
`qemu-img compare` reading the export.
"""

import argparse
import hashlib
import json
import os
import subprocess
import tempfile
import urllib.parse
import urllib.request
import uuid

from clientlib import COMMAND_TIMEOUT_S, Result, check, clean_env, fail, main, poll, step, venv_bin


def parse():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--project-name", required=True)
    ap.add_argument("--username", required=True)
    ap.add_argument("--password", required=True)
    return ap.parse_args()


def scenario():
    args = parse()
    env = clean_env()
    env.update({
        "OS_AUTH_URL": f"{args.endpoint}/identity/v3", "OS_IDENTITY_API_VERSION": "3",
        "OS_AUTH_TYPE": "password", "OS_USERNAME": args.username, "OS_PASSWORD": args.password,
        "OS_PROJECT_NAME": args.project_name, "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default", "OS_INTERFACE": "public",
    })
    osc = venv_bin("openstack")

    def run(argv):
        try:
            p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=COMMAND_TIMEOUT_S,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            fail(f"command did not finish within {COMMAND_TIMEOUT_S}s: {' '.join(argv)}")
        r = Result(argv, p.returncode, p.stdout, p.stderr)
        if r.rc != 0:
            fail("command failed:\n" + r.describe())
        return r

    def oj(*words):
        r = run([osc] + list(words) + ["-f", "json"])
        try:
            return json.loads(r.out)
        except ValueError:
            fail("command did not print JSON:\n" + r.describe())

    tmp = tempfile.mkdtemp(prefix="cb-osc-img-")
    raw = os.path.join(tmp, "src.raw")
    size = 32 << 20
    with open(raw, "wb") as f:
        f.truncate(size)
        for i, off in enumerate([0, size // 3, size - 65536]):
            f.seek(off)
            f.write(bytes(((j ^ (i * 37 + 1)) & 0xFF) for j in range(65536)))
    qcow = os.path.join(tmp, "src.qcow2")
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, qcow], check=True)
    data = open(qcow, "rb").read()

    name = f"osc-img-{uuid.uuid4().hex[:8]}"
    step(f"image create --file {qcow}")
    img = oj("image", "create", "--disk-format", "qcow2", "--container-format", "bare", "--file", qcow, name)
    img_id = img.get("id")
    check(img_id, f"image create printed no id: {img}")

    def active(iid):
        def probe():
            i = oj("image", "show", iid)
            if i.get("status") == "active":
                return i
            if i.get("status") in ("killed", "deleted"):
                fail(f"image {iid} went {i.get('status')}: {i}")
            return ("pending", i.get("status"))
        return probe

    shown = poll(f"image {img_id} active", active(img_id))
    check(shown.get("checksum") == hashlib.md5(data).hexdigest(), f"image show: checksum {shown.get('checksum')}")
    check(int(shown.get("size")) == len(data), f"image show: size {shown.get('size')}")

    step("image list")
    check(any(i.get("ID") == img_id for i in oj("image", "list")), "image list lacks the image")

    step("image set --property os_distro=debian --min-disk 1")
    run([osc, "image", "set", "--property", "os_distro=debian", "--min-disk", "1", img_id])
    s2 = oj("image", "show", img_id)
    check(int(s2.get("min_disk")) == 1, f"image set: min_disk {s2.get('min_disk')}")
    check("debian" in json.dumps(s2.get("properties", s2)), f"image set: property missing: {s2}")

    step("image save")
    saved = os.path.join(tmp, "saved.qcow2")
    run([osc, "image", "save", "--file", saved, img_id])
    check(open(saved, "rb").read() == data, "image save: bytes differ from the upload")

    step("volume create --image")
    vol = oj("volume", "create", "--image", img_id, "--size", "1", f"{name}-vol")
    vol_id = vol.get("id")

    def available():
        v = oj("volume", "show", vol_id)
        if v.get("status") == "available":
            return v
        if str(v.get("status")).startswith("error"):
            fail(f"volume went {v.get('status')}: {v}")
        return ("pending", v.get("status"))

    v = poll(f"volume {vol_id} available", available)
    check(str(v.get("bootable")).lower() == "true", f"volume show: bootable {v.get('bootable')!r}")
    meta = v.get("volume_image_metadata") or {}
    check(img_id in json.dumps(meta), f"volume show: volume_image_metadata {meta!r}")

    step("image create --volume")
    up = oj("image", "create", "--volume", vol_id, "--disk-format", "qcow2", f"{name}-up")
    up_id = up.get("image_id") or up.get("id")
    check(up_id, f"image create --volume printed no image id: {up}")
    poll(f"image {up_id} active", active(up_id))
    poll(f"volume {vol_id} available again", available)
    saved2 = os.path.join(tmp, "uploaded.qcow2")
    run([osc, "image", "save", "--file", saved2, up_id])
    cmp = subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "raw", saved2, raw], capture_output=True, text=True)
    check(cmp.returncode == 0, f"qemu-img compare uploaded image vs source: {cmp.stdout}{cmp.stderr}")

    step("attach over NBD (os-initialize_connection) and qemu-img compare the volume with the source")
    token = oj("token", "issue").get("id")
    check(token, "token issue printed no id")

    def action(body):
        req = urllib.request.Request(
            f"{args.endpoint}/v3/{args.project}/volumes/{vol_id}/action", data=json.dumps(body).encode(),
            headers={"X-Auth-Token": token, "Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=COMMAND_TIMEOUT_S) as r:
            raw_body = r.read()
        return json.loads(raw_body) if raw_body else {}

    connector = {"host": "osc-images-test", "initiator": "cinderblock-client-test"}
    info = action({"os-initialize_connection": {"connector": connector}}).get("connection_info", {})
    check(info.get("driver_volume_type") == "nbd", f"connection_info: {info}")
    d = info.get("data", {})
    uri = f"nbd://{d.get('host')}:{d.get('port')}/{urllib.parse.quote(d.get('export_name', ''), safe='')}"
    # The volume is 1 GiB, the source 32 MiB: without -s, compare accepts the rest being zeroes.
    cmp = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "raw", uri, raw], capture_output=True, text=True,
                         timeout=COMMAND_TIMEOUT_S)
    check(cmp.returncode == 0, f"qemu-img compare NBD export vs source: {cmp.stdout}{cmp.stderr}")
    action({"os-terminate_connection": {"connector": connector}})

    step("cleanup")
    run([osc, "volume", "delete", vol_id])
    run([osc, "image", "delete", img_id, up_id])


if __name__ == "__main__":
    main(scenario)
