#!/usr/bin/env python3
"""The repair path: `sitesync sync --full` (DESIGN §5).

A row at P01 is damaged behind the daemon's back, so `verify` there fails.
`sync --yes --full` at CAS, with the upstream unchanged, must make P01 (and
S01 below it) re-pull a full snapshot and re-verify, after which `verify`
passes again and the rows equal CAS's.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

ENTRIES = 600
SEED = 21
TIMEOUT = 120


def test(h):
    catalog = h.gen_catalog(h.path("upstream", "catalog.xml"), ENTRIES, 1, SEED)
    cas = h.add_site("CAS", upstream="file://" + catalog)
    p01 = h.add_site("P01", parent=cas)
    s01 = h.add_site("S01", parent=p01, listen=False)
    h.start_tree(cas, p01, s01)
    cas.cli_ok("sync", "--yes")
    wait_for(lambda: cas.catalog_state()[0] == 1, TIMEOUT, "CAS to make version 1")
    h.wait_converged(cas, [p01, s01], TIMEOUT, "version 1 everywhere")

    p01.sql("UPDATE updates SET title = 'damaged', entry_hash = sha256('damaged') "
            "WHERE update_id = (SELECT min(update_id::text)::uuid FROM updates)")
    rc, out, err = p01.cli("verify")
    check(rc == 2, "verify at the damaged P01 should fail, exited %d: %s%s" % (rc, out, err))
    check(p01.fingerprint() != cas.fingerprint(), "the damage did not change P01's rows")

    cas.cli_ok("sync", "--yes", "--full")

    def repaired():
        rc2, _, _ = p01.cli("verify")
        return rc2 == 0 and p01.fingerprint() == cas.fingerprint()
    wait_for(repaired, TIMEOUT, "P01 to re-pull a full snapshot and verify")
    with open(p01.logfile) as f:
        check("(full snapshot)" in f.read(), "P01 did not log a full-snapshot pull")
    h.wait_converged(cas, [p01, s01], TIMEOUT, "S01 to follow the repair")
    check(cas.catalog_state()[0] == 1, "--full with an unchanged upstream must not make a version")
    log("P01 repaired by a full re-pull; verify passes; version still 1")


if __name__ == "__main__":
    harness.main(test, "repair")
