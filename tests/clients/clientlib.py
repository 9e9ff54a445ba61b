"""Shared helpers for the real-client scenarios run by tests/clients.rs.

Every scenario script takes `--endpoint http://127.0.0.1:PORT --project P`, talks to a running
cinderblock daemon with an unmodified client from PyPI (installed in the venv that runs the
script) and exits non-zero with a clear message at the first mismatch. Waits are polls with a
deadline, never fixed sleeps.
"""

import argparse
import json
import os
import subprocess
import sys
import time

# How long one poll loop (volume becoming available, disappearing, job finishing) may take.
POLL_DEADLINE_S = float(os.environ.get("CLIENT_POLL_DEADLINE_S", "90"))
# How long one CLI invocation may take (the openstack CLI alone needs a few seconds to start).
COMMAND_TIMEOUT_S = float(os.environ.get("CLIENT_COMMAND_TIMEOUT_S", "120"))


class Mismatch(Exception):
    """A client saw something other than what the scenario expects."""


def fail(msg):
    raise Mismatch(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def step(msg):
    print(f"--- {msg}", flush=True)


def parse_args(description):
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--endpoint", required=True, help="http://127.0.0.1:PORT (no path)")
    ap.add_argument("--project", required=True, help="project id used in the URLs")
    return ap.parse_args()


def venv_bin(name):
    """Path of a console script installed next to the interpreter running this file."""
    path = os.path.join(os.path.dirname(os.path.abspath(sys.executable)), name)
    if not os.path.exists(path):
        fail(f"{name} is not installed in the client venv ({path} missing)")
    return path


def clean_env():
    """The caller's environment without OS_* variables, so a stray OS_AUTH_URL or OS_CLOUD on the
    machine cannot redirect the CLIs: every scenario passes its auth options explicitly."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
    env.setdefault("LC_ALL", "C.UTF-8")
    env["PYTHONWARNINGS"] = "ignore"
    return env


class Result:
    def __init__(self, argv, rc, out, err):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err

    def describe(self):
        return (f"$ {' '.join(self.argv)}\n  exit {self.rc}\n  stdout: {self.out.strip()[:4000]}\n"
                f"  stderr: {self.err.strip()[:4000]}")


def run(argv, expect_ok=True):
    """Run a CLI; with expect_ok a non-zero exit is a mismatch that shows the whole exchange."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, env=clean_env(),
                           timeout=COMMAND_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        fail(f"command did not finish within {COMMAND_TIMEOUT_S}s: {' '.join(argv)}")
    r = Result(argv, p.returncode, p.stdout, p.stderr)
    if expect_ok and r.rc != 0:
        fail("command failed:\n" + r.describe())
    return r


def run_json(argv):
    r = run(argv)
    try:
        return json.loads(r.out)
    except ValueError:
        fail("command did not print JSON:\n" + r.describe())


def poll(what, probe, deadline_s=None, interval_s=0.3):
    """Call probe() until it returns something other than None, or fail after the deadline.

    probe may raise Mismatch to stop early (e.g. the volume went to `error`).
    Returns probe's value. The last observation is kept for the failure message."""
    deadline = time.monotonic() + (deadline_s or POLL_DEADLINE_S)
    last = None
    while True:
        value = probe()
        if isinstance(value, tuple) and len(value) == 2 and value[0] == "pending":
            last = value[1]
            value = None
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            fail(f"timed out after {deadline_s or POLL_DEADLINE_S}s waiting for {what}; "
                 f"last seen: {last}")
        time.sleep(interval_s)


def parse_table(text):
    """Parse a prettytable as printed by the cinder CLI into a list of row dicts keyed by header.

    Continuation lines (a cell wrapped onto the next line, first cell empty) are appended to the
    previous row's cells."""
    rows, header = [], None
    for line in text.splitlines():
        line = line.rstrip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if len(cells) != len(header):
            continue
        if rows and cells[0] == "" and any(cells[1:]):
            prev = rows[-1]
            for h, c in zip(header, cells):
                if c:
                    prev[h] = (prev[h] + " " + c).strip() if prev[h] else c
            continue
        rows.append(dict(zip(header, cells)))
    return rows


def parse_property_table(text):
    """A `| Property | Value |` table (cinder show/create) as a dict."""
    rows = parse_table(text)
    if rows and not {"Property", "Value"} <= set(rows[0]):
        fail(f"expected a Property/Value table, got headers {list(rows[0])}:\n{text}")
    return {r["Property"]: r["Value"] for r in rows}


def main(scenario):
    """Run scenario() and turn a Mismatch (or any crash) into a clear non-zero exit."""
    try:
        scenario()
    except Mismatch as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    print("OK", flush=True)
