#!/usr/bin/env python3
"""Driver of bench/image_bench.sh: times image flows against a running daemon (noauth mode).

    image_bench.py BASE_URL MOUNT RUNS

MOUNT holds the pool (MOUNT/pool) and the test image (MOUNT/scratch/image.qcow2). Every wait
polls every 2 ms over one kept-alive connection, so a figure is the time until the state was
first visible, give or take 2 ms. Prints a Markdown table of medians.
"""

import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
import uuid

BASE, MOUNT, RUNS = sys.argv[1], sys.argv[2], int(sys.argv[3])
PROJECT = uuid.uuid4().hex
URL = urllib.parse.urlparse(BASE)
SCRATCH = os.path.join(MOUNT, "scratch")
IMAGE = os.path.join(SCRATCH, "image.qcow2")
conn = http.client.HTTPConnection(URL.hostname, URL.port, timeout=600)


def call(method, path, body=None, ctype="application/json", expect=None):
    headers = {"X-Project-Id": PROJECT}
    if body is not None:
        headers["Content-Type"] = ctype
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
    conn.request(method, path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    if expect is not None and r.status != expect:
        sys.exit(f"{method} {path}: {r.status} {data[:300]!r}")
    return json.loads(data) if data else None


def cinder(method, path, body=None, expect=None):
    return call(method, f"/v3/{PROJECT}{path}", body, expect=expect)


def wait(get, want, what, deadline_s=1800):
    end = time.monotonic() + deadline_s
    while True:
        s = get()
        if s == want:
            return
        if s in ("error", "killed", "error_restoring") or time.monotonic() > end:
            sys.exit(f"{what}: status {s}")
        time.sleep(0.002)


def volume_status(vid):
    return cinder("GET", f"/volumes/{vid}", expect=200)["volume"]["status"]


def image_status(iid):
    return call("GET", f"/image/v2/images/{iid}", expect=200)["status"]


def upload_image():
    img = call("POST", "/image/v2/images",
               {"name": "bench", "disk_format": "qcow2", "container_format": "bare"}, expect=201)
    size = os.path.getsize(IMAGE)
    t0 = time.monotonic()
    with open(IMAGE, "rb") as f:
        conn.request("PUT", f"/image/v2/images/{img['id']}/file", body=f,
                     headers={"X-Project-Id": PROJECT, "Content-Type": "application/octet-stream",
                              "Content-Length": str(size)})
        r = conn.getresponse()
        r.read()
    if r.status != 204:
        sys.exit(f"upload: {r.status}")
    return img["id"], time.monotonic() - t0


def volume_from_image(iid, size_gb=2):
    t0 = time.monotonic()
    v = cinder("POST", "/volumes", {"volume": {"size": size_gb, "imageRef": iid}}, expect=202)["volume"]
    wait(lambda: volume_status(v["id"]), "available", "volume from image")
    return v["id"], time.monotonic() - t0


def timed(cmd):
    t0 = time.monotonic()
    subprocess.run(cmd, check=True)
    return time.monotonic() - t0


def delete_volume(vid):
    cinder("DELETE", f"/volumes/{vid}", expect=202)
    end = time.monotonic() + 300
    while True:
        conn.request("GET", f"/v3/{PROJECT}/volumes/{vid}", headers={"X-Project-Id": PROJECT})
        r = conn.getresponse()
        r.read()
        if r.status == 404:
            return
        if time.monotonic() > end:
            sys.exit(f"volume {vid} not deleted")
        time.sleep(0.01)


rows = {}


def add(row, seconds):
    rows.setdefault(row, []).append(seconds)


size_mib = os.path.getsize(IMAGE) / 2**20
print(f"image: 2 GiB virtual qcow2, {size_mib:.0f} MiB file, 768 MiB of data", file=sys.stderr)
for run in range(RUNS):
    print(f"run {run + 1} of {RUNS}", file=sys.stderr)
    ref = os.path.join(SCRATCH, "ref.raw")
    add("ref: cp --reflink=never of the qcow2 file", timed(["cp", "--reflink=never", IMAGE, ref]))
    os.unlink(ref)
    iid, t = upload_image()
    add("upload of the qcow2 (PUT …/file → 204)", t)
    add("ref: qemu-img convert -f qcow2 -O raw", timed(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", IMAGE, ref]))
    os.unlink(ref)
    vids = []
    for label in (["first volume from the image (conversion)",
                               "second volume (cache hit)", "third volume (cache hit)"]):
        vid, t = volume_from_image(iid)
        add(label, t)
        vids.append(vid)
    for vid in vids:
        delete_volume(vid)
    call("DELETE", f"/image/v2/images/{iid}", expect=204)

# Upload to image: a 10 GiB volume with 2 GiB of data.
v = cinder("POST", "/volumes", {"volume": {"size": 10}}, expect=202)["volume"]
wait(lambda: volume_status(v["id"]), "available", "blank volume")
path = os.path.join(MOUNT, "pool", "volumes", f"{v['id']}.raw")
with open(path, "r+b") as f:
    for gib in (0, 4, 8):
        f.seek(gib << 30)
        left = (2 << 30) // 3
        while left > 0:
            chunk = os.urandom(min(left, 8 << 20))
            f.write(chunk)
            left -= len(chunk)
    os.fsync(f.fileno())
for run in range(RUNS):
    print(f"upload run {run + 1} of {RUNS}", file=sys.stderr)
    for fmt in ("raw", "qcow2"):
        t0 = time.monotonic()
        r = cinder("POST", f"/volumes/{v['id']}/action",
                   {"os-volume_upload_image": {"image_name": f"up-{fmt}", "disk_format": fmt,
                                               "container_format": "bare"}}, expect=202)
        iid = r["os-volume_upload_image"]["image_id"]
        wait(lambda: image_status(iid), "active", f"upload as {fmt}")
        add(f"os-volume_upload_image of 10 GiB / 2 GiB data as {fmt} (→ image active)", time.monotonic() - t0)
        wait(lambda: volume_status(v["id"]), "available", "volume after upload")
        call("DELETE", f"/image/v2/images/{iid}", expect=204)
        out = os.path.join(SCRATCH, f"ref.{fmt}")
        add(f"ref: qemu-img convert -f raw -O {fmt} of the volume file",
            timed(["qemu-img", "convert", "-f", "raw", "-O", fmt, path, out]))
        os.unlink(out)
delete_volume(v["id"])

print("| row | median (s) | runs (s) |")
print("| --- | ---: | --- |")
for row, xs in rows.items():
    med = statistics.median(xs)
    shown = f"{med * 1000:.1f} ms" if med < 1 else f"{med:.2f}"
    print(f"| {row} | {shown} | {', '.join(f'{x:.3f}' for x in xs)} |")
