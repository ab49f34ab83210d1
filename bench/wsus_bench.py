#!/usr/bin/env python3
"""Figure 8, the WSUS upstream: a first sync of N generated revisions from
the loopback MS-WSUSSS upstream (tests/wsus_upstream.py --volume), against
the same requests replayed by curl alone (the transport floor: HTTP and the
server's own time, no parsing, no database), then a delta sync after 1% of
the updates changed upstream.

    bench/run --only 8 [--wsus-revisions N]   # default 25000, --quick 2000
    python3 bench/wsus_bench.py [N]            # alone, default 25000

Uses tests/integration/harness.py (private PostgreSQL, real daemon); alone,
the `build` directory's binaries (SS_SITESYNCD / SS_SITESYNC override).
Timings are wall clock around `sync --yes` until the sync log's end line.
Needs gcab (the test upstream's Cabinet tool) and curl.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("SS_SOURCE_ROOT", ROOT)
os.environ.setdefault("SS_SITESYNCD", os.path.join(ROOT, "build", "server", "sitesyncd"))
os.environ.setdefault("SS_SITESYNC", os.path.join(ROOT, "build", "cli", "sitesync"))
import harness  # noqa: E402
import wsus_upstream as wu  # noqa: E402
from test_upstream import run_sync  # noqa: E402


def timed_sync(site):
    t0 = time.monotonic()
    out = run_sync(site)
    dt = time.monotonic() - t0
    harness.check("Sync finished" in out, "sync failed: %s" % out[-2000:])
    return dt, out


def curl_replay(url, bodies):
    """The same POSTs, one curl process, one connection: seconds and bytes."""
    with tempfile.TemporaryDirectory() as d:
        args = ["curl", "-s", "-o", "/dev/null", "-w", "%{size_download}\n"]
        for i, (path, body) in enumerate(bodies):
            f = os.path.join(d, "%d.xml" % i)
            with open(f, "wb") as fh:
                fh.write(body)
            if i:
                args.append("--next")
            args += ["-s", "-o", "/dev/null", "-w", "%{size_download}\n",
                     "-H", "Content-Type: text/xml; charset=utf-8",
                     "--data-binary", "@" + f, url + path]
        t0 = time.monotonic()
        p = subprocess.run(args, stdout=subprocess.PIPE, check=True, text=True)
        dt = time.monotonic() - t0
        return dt, sum(int(x) for x in p.stdout.split())


def measure(h, n, code="CAS"):
    """Both syncs against an N-revision upstream; the figures as a dict."""
    for tool in ("gcab", "curl"):
        if shutil.which(tool) is None:
            raise harness.Skip("%s is not installed" % tool)
    t0 = time.monotonic()
    up = wu.WsusUpstream(volume=n)
    up.warm()
    harness.log("upstream: %d documents generated and compressed in %.0f s"
                % (len(up.docs), time.monotonic() - t0))
    up.start()
    try:
        cas = h.add_site(code, upstream=up.url, listen=False,
                         extra={"upstream": {"kind": "wsus"}})
        cas.start()
        timed_sync(cas)                                  # categories
        for pid in {p for p, _ in up.filters}:
            cas.cli_ok("products", "select", pid)
        for cid in {c for _, c in up.filters}:
            cas.cli_ok("classifications", "select", cid)
        up.bodies = []
        up.data_ids = []
        dt, _ = timed_sync(cas)
        r = {"asked": len(up.data_ids), "held": int(cas.sql("SELECT count(*) FROM updates")),
             "first": dt, "requests": len(up.bodies)}
        bodies = up.bodies
        up.bodies = None
        r["curl"], r["bytes"] = curl_replay(up.url, bodies)
        harness.log("first sync: %d revisions asked for, %d entries held, %.1f s "
                    "(%.0f revisions/s); curl replay of the same %d requests: %.1f s, "
                    "%.1f MB; ratio %.2fx" % (r["asked"], r["held"], dt, r["asked"] / dt,
                                              r["requests"], r["curl"], r["bytes"] / 1e6,
                                              dt / r["curl"]))
        changed = up.updates[::100]
        up.bump(changed)
        up.data_ids = []
        r["delta"], _ = timed_sync(cas)
        r["changed"], r["delta_asked"] = len(changed), len(up.data_ids)
        harness.log("delta sync after %d changed (1%%): %.1f s, %d documents asked for"
                    % (r["changed"], r["delta"], r["delta_asked"]))
        cas.stop()
        return r
    finally:
        up.stop()


def fig_8(b):
    """bench.py's figure 8: two rows of its table."""
    B = sys.modules["__main__"]
    n = b.args.wsus_revisions
    try:
        r = measure(b.h, n, code="WSU")
    except harness.Skip as e:
        B.result("8", "WSUS first sync", "skipped", "", None, "", None, "report", None, str(e))
        return
    quick = "; QUICK: fewer revisions than the 25,000 of RESULTS.md" if n < 25000 else ""
    B.result("8", "WSUS first sync %d revisions" % r["asked"], r["first"], "s", r["curl"], "s",
             r["first"] / r["curl"], "report", None,
             "%.0f revisions/s, %d entries held; baseline: curl replaying the same %d "
             "requests (%.1f MB), the transport floor%s"
             % (r["asked"] / r["first"], r["held"], r["requests"], r["bytes"] / 1e6, quick))
    B.result("8", "WSUS delta sync, 1% changed", r["delta"], "s", r["first"], "s",
             r["delta"] / r["first"], "report", None,
             "%d revisions changed upstream, %d documents asked for; baseline: the first sync"
             % (r["changed"], r["delta_asked"]))


def bench(h, n):
    r = measure(h, n)
    print("| %d | %.1f s | %.0f/s | %.1f s (%.1f MB) | %.2fx | %d changed: %.1f s, %d asked |"
          % (r["asked"], r["first"], r["asked"] / r["first"], r["curl"], r["bytes"] / 1e6,
             r["first"] / r["curl"], r["changed"], r["delta"], r["delta_asked"]))


if __name__ == "__main__":
    N = int(sys.argv[1]) if len(sys.argv) > 1 else 25000
    harness.main(lambda h: bench(h, N), "wsus_bench")
