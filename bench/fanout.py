"""Figure 4: one parent serving many children pulling the same delta at once.

The children are bench/lightchild: light clients in one process that speak
the real protocol over mutual TLS with their own certificates (codes A00..,
made with deploy/sitesync-certs and approved with `sitesync child add`) and
check the digest without a database.

Catalog: a base of `fan_base` entries at version 1; version 2 retitles
`fan_entries` of them (revision+1). Every light child says it holds version
1 and pulls 1 -> 2. Measured: wall time of one child alone (baseline) and of
all of them at once, bytes received, the parent's peak RSS (VmHWM, reset
before the runs) and how many times the parent produced the 1 -> 2 stream
("produced stream" debug lines).
"""

import json
import os
import re
import statistics
import string
import subprocess
import time

import harness
from harness import check, log

import sys

# bench.py runs as __main__: share its RESULTS and helpers.
B = sys.modules["__main__"]


def codes(n):
    out = []
    for letter in string.ascii_uppercase[:10]:
        for i in range(100):
            out.append("%s%02d" % (letter, i))
    return out[:n]


def run_light(b, top, sites, base_file, digest, have):
    exe = os.path.join(b.args.build, "bench", "lightchild")
    check(os.access(exe, os.X_OK), "%s not built (ninja -C build)" % exe)
    p = subprocess.run([exe, "--parent", "127.0.0.1:%d" % top.port,
                        "--ca", b.h.certs.ca, "--certs", b.h.certs.dir,
                        "--sites", ",".join(sites), "--have", str(have),
                        "--digest", digest, "--base", base_file],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       timeout=1200)
    if b.args.logs:
        os.makedirs(b.args.logs, exist_ok=True)
        with open(os.path.join(b.args.logs, "lightchild.err"), "a") as f:
            f.write(p.stderr)
    if p.returncode != 0:
        raise harness.TestFailure("lightchild exited %d: %s | %s" % (
            p.returncode, p.stderr[-1500:], p.stdout[-500:]))
    return json.loads(p.stdout.strip().splitlines()[-1])


def cpu_seconds(pid):
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fig_4(b):
    h, a = b.h, b.args
    nbase = a.fan_base
    nchange = a.fan_entries
    cat = B.gen_catalog(os.path.join(b.catdir, "r1_%d.xml" % nbase), nbase)
    b.set_upstream(cat)
    # Many children connect at once: raise nothing in the daemon's config
    # beyond what an operator would (defaults), only the log level.
    # The light children do not ping (see lightchild.c): Bench.site gives
    # the parent a heartbeat timeout longer than the queue wait of 250 pulls.
    top = b.site("FAN", upstream=True)
    top.start()
    _, v1, _ = b.top_sync(top)
    base_file = h.path("fan_base.txt")
    with open(base_file, "w") as f:
        f.write(top.sql("SELECT update_id, encode(entry_hash,'hex') FROM updates")
                .replace("|", " ") + "\n")
    d1 = top.sql("SELECT encode(digest,'hex') FROM catalog_state")
    changed = os.path.join(b.catdir, "r1_%d_fan%d.xml" % (nbase, nchange))
    if not os.path.exists(changed):
        B.retitle(cat, changed, max(1, nbase // nchange), "fan")
    b.set_upstream(changed)
    _, v2, _ = b.top_sync(top)
    st = top.catalog_state()
    log("fig 4: parent at version %d (%d entries); delta %d -> %d" % (
        v2, st[2], v1, v2))

    kids = codes(a.fan_children)
    t0 = time.monotonic()
    for c in kids:
        h.certs.site(c)
        top.cli_ok("child", "add", c)
    log("fig 4: %d certificates made and approved in %.0fs" % (
        len(kids), time.monotonic() - t0))

    pid = top.proc.pid
    B.reset_hwm(pid)
    mark = top.log_mark()
    many = []
    cpu0 = cpu_seconds(pid)
    for r in range(a.runs):
        res = run_light(b, top, kids, base_file, d1, v1)
        check(res["ok"] == len(kids), "fan-out run: %r" % res)
        many.append(res)
        log("fig 4: %d children pulled %d upserts each in %.2fs (%.1f MB total)"
            % (res["ok"], res["upserts"], res["seconds"], res["bytes"] / 1e6))
    peak = B.vm_hwm_kb(pid) / 1024.0
    # The parent's own work per byte served, which the wall time (shared
    # cores, the light clients' decryption) hides.
    cpu = cpu_seconds(pid) - cpu0
    served = sum(m["bytes"] for m in many) / 1e9
    prod = [m for _, _, m in B.log_events(top, mark)
            if re.search(r"produced stream %d->%d" % (v1, v2), m)]
    singles = []
    for r in range(a.runs):
        res = run_light(b, top, kids[:1], base_file, d1, v1)
        singles.append(res)
        log("fig 4: one child alone: %.3fs (%.1f MB)" % (res["seconds"],
                                                         res["bytes"] / 1e6))
    agg = statistics.median(m["bytes"] / 1e6 / m["seconds"] for m in many)
    one = statistics.median(s["bytes"] / 1e6 / s["seconds"] for s in singles)
    result = B.result
    result("4", "fan-out %d children, aggregate" % len(kids), agg, "MB/s", one,
           "MB/s", agg / one, "report", None,
           "wall %s s for all; one child alone %s s; delta %d upserts, %.1f MB per child; "
           "parent CPU %.1f s for %.1f GB served (%.2f s/GB)"
           % (["%.2f" % m["seconds"] for m in many],
              ["%.3f" % s["seconds"] for s in singles], many[0]["upserts"],
              many[0]["bytes"] / len(kids) / 1e6, cpu, served, cpu / served))
    result("4", "fan-out: parent peak RSS", peak, "MB", None, "MB", None,
           "<= 128 MB", peak <= 128)
    result("4", "fan-out: delta streams produced", len(prod), "x", None, "", None,
           "1", len(prod) == 1,
           "%d runs of %d children + %d single runs; 'produced stream %d->%d' "
           "lines in the parent's log" % (a.runs, len(kids), a.runs, v1, v2))
    top.stop()
