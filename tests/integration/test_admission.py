#!/usr/bin/env python3
"""Admission control at a parent (DESIGN §8).

CAS serves at most one pull at a time and each child link at a limited
rate. Three children ask for the same first snapshot at once: the later
ones must be queued (not failed), every child must end with CAS's catalog,
and the limited link must have taken at least as long as the limit implies.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

ENTRIES = 800
SEED = 3
RATE_KIB = 1024
TIMEOUT = 180


def test(h):
    cas, _ = h.add_top(ENTRIES, SEED,
                       extra={"replication": {"max_concurrent_pulls": "1",
                                              "rate_limit_kib": str(RATE_KIB)}})
    kids = [h.add_site(code, parent=cas, listen=False) for code in ("P01", "P02", "P03")]
    cas.start()
    for k in kids:
        cas.cli_ok("child", "add", k.code)
        k.start()
    wait_for(lambda: all(r["link"] == "active" for r in cas.status_json()["sites"][1:]),
             60, "all three children to connect")

    t0 = time.monotonic()
    cas.cli_ok("sync", "--yes")
    h.wait_converged(cas, kids, TIMEOUT, "the first snapshot to reach all three children")
    elapsed = time.monotonic() - t0

    with open(cas.logfile) as f:
        text = f.read()
    queued = re.findall(r"child (P0\d): pull from version 0 queued", text)
    served = re.findall(r"child (P0\d): served versions 0->1 as a snapshot \(\d+ changes, (\d+) bytes\)", text)
    check(len(queued) >= 2, "expected two pulls queued behind the first, log shows %r" % queued)
    check(len(set(c for c, _ in served)) == 3, "expected snapshots served to all three, log shows %r" % served)
    total = sum(int(b) for _, b in served)
    # Served one after another at the limit: a lower bound, not a speed test.
    floor = total / (RATE_KIB * 1024.0) * 0.8
    check(elapsed >= floor, "3 snapshots of %d bytes in all took %.1fs, under the %.1fs the "
          "rate limit allows" % (total, elapsed, floor))
    log("queued %s; served %d bytes in %.1fs (limit implies >= %.1fs)"
        % (sorted(set(queued)), total, elapsed, floor))


if __name__ == "__main__":
    harness.main(test, "admission")
