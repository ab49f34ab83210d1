#!/usr/bin/env python3
"""WSUS upstream figure: a first sync of N generated revisions from the
loopback MS-WSUSSS upstream (tests/wsus_upstream.py --volume), against the
same requests replayed by curl alone (the transport floor: HTTP and the
server's own time, no parsing, no database), then a delta sync after 1% of
the updates changed upstream.

    python3 bench/wsus_bench.py [N]          # default 25000

Uses tests/integration/harness.py (private PostgreSQL, real daemon) and the
`build` directory's binaries (SS_SITESYNCD / SS_SITESYNC override).
Timings are wall clock around `sync --yes` until the sync log's end line.
"""
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("SS_SOURCE_ROOT", ROOT)
os.environ.setdefault("SS_SITESYNCD", os.path.join(ROOT, "build", "server", "sitesyncd"))
os.environ.setdefault("SS_SITESYNC", os.path.join(ROOT, "build", "server", "sitesync"))
import harness  # noqa: E402
import wsus_upstream as wu  # noqa: E402
from test_upstream import run_sync  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 25000


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


def bench(h):
    t0 = time.monotonic()
    up = wu.WsusUpstream(volume=N)
    up.warm()
    harness.log("upstream: %d documents generated and compressed in %.0f s"
                % (len(up.docs), time.monotonic() - t0))
    up.start()
    try:
        cas = h.add_site("CAS", upstream=up.url, listen=False,
                         extra={"upstream": {"kind": "wsus"}})
        cas.start()
        timed_sync(cas)                                  # categories
        for pid in {p for p, _ in up.filters}:
            cas.cli_ok("products", "select", pid)
        for cid in {c for _, c in up.filters}:
            cas.cli_ok("classifications", "select", cid)
        up.bodies = []
        up.data_ids = []
        dt, out = timed_sync(cas)
        held = int(cas.sql("SELECT count(*) FROM updates"))
        asked = len(up.data_ids)
        bodies = up.bodies
        up.bodies = None
        ct, nbytes = curl_replay(up.url, bodies)
        harness.log("first sync: %d revisions asked for, %d entries held, %.1f s "
                    "(%.0f revisions/s); curl replay of the same %d requests: %.1f s, "
                    "%.1f MB; ratio %.2fx" % (asked, held, dt, asked / dt, len(bodies), ct,
                                              nbytes / 1e6, dt / ct))
        changed = up.updates[::100]
        up.bump(changed)
        up.data_ids = []
        dd, out = timed_sync(cas)
        harness.log("delta sync after %d changed (1%%): %.1f s, %d documents asked for"
                    % (len(changed), dd, len(up.data_ids)))
        print("| %d | %.1f s | %.0f/s | %.1f s (%.1f MB) | %.2fx | %d changed: %.1f s, %d asked |"
              % (asked, dt, asked / dt, ct, nbytes / 1e6, dt / ct, len(changed), dd,
                 len(up.data_ids)))
    finally:
        up.stop()


if __name__ == "__main__":
    harness.main(bench, "wsus_bench")
