#!/usr/bin/env python3
"""Five sites, three catalog rounds, one site down for a round.

        CAS
       /   \\
     P01   P02
      |     |
     S01   S02

Round 1 (10,000 entries) and round 2 (adds, changes, deletions) must reach
every site with CAS's version, digest and identical rows. Round 3 is made
while P01 is stopped: P02/S02 get it, P01/S01 stay at 2, and once P01 is
back both catch up. Then `verify` at S01 and `status --json` at CAS.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

ENTRIES = 10000
SEED = 42
SYNC_TIMEOUT = 300      # per round, whole hierarchy; generous for ASan builds


def sync_round(h, cas, rnd):
    """Write upstream round `rnd` and sync CAS; return CAS's new state."""
    before = cas.catalog_state()
    h.gen_catalog(h.catalog, ENTRIES, rnd, SEED)
    cas.cli_ok("sync", "--yes")
    st = wait_for(lambda: (cas.catalog_state()[0] > before[0]
                           and cas.catalog_state()),
                  SYNC_TIMEOUT, "CAS to make catalog version %d" % rnd)
    check(st[0] == rnd, "CAS version after round %d is %d" % (rnd, st[0]))
    check(st[2] > 0, "CAS holds no entries after round %d" % rnd)
    log("round %d: CAS at version %d, %d entries, digest %s…"
        % (rnd, st[0], st[2], st[1][:16]))
    return st


def test(h):
    h.catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(h.catalog))
    # The upstream file must exist before the first sync only; write round 1
    # now so a misconfigured URL shows up at start rather than at sync.
    h.gen_catalog(h.catalog, ENTRIES, 1, SEED)

    cas = h.add_site("CAS", upstream="file://" + h.catalog)
    p01 = h.add_site("P01", parent=cas)
    p02 = h.add_site("P02", parent=cas)
    s01 = h.add_site("S01", parent=p01, listen=False)
    s02 = h.add_site("S02", parent=p02, listen=False)
    children = [p01, p02, s01, s02]

    h.start_levels(cas, [p01, p02], [s01, s02])

    # Round 1: the base catalog everywhere.
    st1 = sync_round(h, cas, 1)
    got = h.wait_converged(cas, children, SYNC_TIMEOUT, "round 1 at every site")
    check(got == st1, "round 1 converged on %r, CAS made %r" % (got, st1))
    log("round 1: all five sites hold version 1, fingerprint %r"
        % (cas.fingerprint(),))

    # Round 2: adds, changes and deletions.
    fp1 = cas.fingerprint()
    st2 = sync_round(h, cas, 2)
    check(st2[1] != st1[1], "round 2 did not change the digest")
    check(cas.fingerprint() != fp1, "round 2 did not change the rows")
    got = h.wait_converged(cas, children, SYNC_TIMEOUT, "round 2 at every site")
    check(got == st2, "round 2 converged on %r, CAS made %r" % (got, st2))
    log("round 2: all five sites hold version 2")

    # Round 3 with P01 down: its side of the tree stays behind.
    p01.stop()
    st3 = sync_round(h, cas, 3)
    h.wait_converged(cas, [p02, s02], SYNC_TIMEOUT, "round 3 at P02 and S02")
    check(p01.catalog_state()[0] == 2, "stopped P01 moved to %r"
          % (p01.catalog_state(),))
    check(s01.catalog_state()[0] == 2, "S01 (under stopped P01) moved to %r"
          % (s01.catalog_state(),))
    log("round 3: P02/S02 at version 3, P01/S01 still at 2")

    # P01 returns: it and S01 catch up without another sync at CAS.
    p01.start()
    got = h.wait_converged(cas, [p01, s01], SYNC_TIMEOUT,
                           "P01 and S01 to catch up to version 3")
    check(got == st3, "catch-up converged on %r, CAS holds %r" % (got, st3))
    log("round 3: P01 and S01 caught up")

    rc, out, err = s01.cli("verify")
    check(rc == 0, "verify at S01 exited %d: %s%s" % (rc, out, err))

    want = {"CAS", "P01", "P02", "S01", "S02"}

    def all_listed():
        doc = cas.status_json()
        check(doc.get("site") == "CAS", "status site is %r" % doc.get("site"))
        listed = {row.get("site") for row in doc.get("sites", [])}
        return want <= listed and doc
    doc = wait_for(all_listed, 120, "CAS status --json to list all five sites")
    check(doc.get("top_version") == 3, "top_version %r" % doc.get("top_version"))
    rows = {r["site"]: r for r in doc["sites"]}
    parents = {"P01": "CAS", "P02": "CAS", "S01": "P01", "S02": "P02"}
    for site, parent in parents.items():
        check(rows[site].get("parent") == parent, "status: %s parent %r"
              % (site, rows[site].get("parent")))

    # Every site's view agrees with its database, once the reports are in.
    def versions_reported():
        d = cas.status_json()
        return all(r.get("catalog_version") == 3 for r in d["sites"]
                   if r.get("site") in want)
    wait_for(versions_reported, 120, "status rows at CAS to show version 3")


if __name__ == "__main__":
    harness.main(test, "hierarchy")
