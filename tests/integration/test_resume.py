#!/usr/bin/env python3
"""Resumable pulls (DESIGN §3, §8).

A child killed part-way through a large first pull keeps the whole frames
it stored. After a restart it asks to continue at that byte, the parent
(whose stream for the same change set is the same bytes) continues there,
and the catalog only becomes visible once the whole pull is verified.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

ENTRIES = 1500
SEED = 9
RATE_KIB = 768
TIMEOUT = 180


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    h.gen_catalog(catalog, ENTRIES, 1, SEED)
    cas = h.add_site("CAS", upstream="file://" + catalog,
                     extra={"replication": {"rate_limit_kib": str(RATE_KIB)}})
    p01 = h.add_site("P01", parent=cas, listen=False)
    cas.start()
    cas.cli_ok("child", "add", "P01")
    p01.start()
    cas.cli_ok("sync", "--yes")

    partial = os.path.join(p01.state_dir, "pull.stream")
    wait_for(lambda: os.path.exists(partial) and os.path.getsize(partial) > 1 << 20, TIMEOUT,
             "P01 to store over 1 MiB of its first pull")
    p01.kill()
    kept = os.path.getsize(partial)
    check(p01.catalog_state()[0] == 0, "P01 exposed a catalog before its pull was complete")
    log("P01 killed with %d bytes of the stream stored; its catalog is still empty" % kept)

    p01.start()
    h.wait_converged(cas, [p01], TIMEOUT, "P01 to finish its resumed pull")
    with open(p01.logfile) as f:
        m = re.search(r"parent CAS resumes the pull at byte (\d+)", f.read())
    check(m is not None, "P01 did not resume its pull (no 'resumes the pull' line)")
    at = int(m.group(1))
    check(0 < at <= kept, "resumed at byte %d, but %d bytes were stored" % (at, kept))
    with open(cas.logfile) as f:
        served = re.findall(r"child P01: served versions 0->1 as a snapshot \(\d+ changes, (\d+) bytes\)",
                            f.read())
    check(served, "CAS never finished serving P01")
    log("P01 resumed at byte %d of %s and converged with CAS's digest" % (at, served[-1]))
    rc, out, err = p01.cli("verify")
    check(rc == 0, "verify at P01 exited %d: %s%s" % (rc, out, err))


if __name__ == "__main__":
    harness.main(test, "resume")
