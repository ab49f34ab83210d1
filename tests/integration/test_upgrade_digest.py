#!/usr/bin/env python3
"""Migration 005: an upgraded site keeps its catalog and verifies.

A three-level tree (CAS -> P01 -> S01) holds version 1. Each site's
database is then put back to the schema before migration 005 (the set-hash
columns dropped, the migration unrecorded), as a protocol-2 daemon left
it; the rows and the protocol-2 sums are what such a daemon wrote. On
start every site computes its LtHash set digest from its stored rows (no
re-pull); the top records a no-change version 2 so that a manifest with
the set digest exists, and the others pull it as an empty delta. All end
at version 2 with the same entries, `verify` passes everywhere, and the set
digest each stored equals the one CAS computed.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

ENTRIES = 400
TIMEOUT = 120

PRE_005 = ("ALTER TABLE catalog_state DROP COLUMN lthash; "
           "ALTER TABLE catalog_versions DROP COLUMN set_digest; "
           "DELETE FROM schema_migrations WHERE version = 5")


def test(h):
    cas, _ = h.add_top(ENTRIES, 4)
    p01 = h.add_site("P01", parent=cas)
    s01 = h.add_site("S01", parent=p01, listen=False)
    h.start_tree(cas, p01, s01)
    cas.cli_ok("sync", "--yes")
    v1 = h.wait_converged(cas, [p01, s01], TIMEOUT, "version 1 everywhere")
    rows = {s.code: s.fingerprint() for s in (cas, p01, s01)}

    for s in (s01, p01, cas):
        s.stop()
        s.sql(PRE_005)
    log("three sites put back to the schema before migration 005 at version %d" % v1[0])

    cas.start()
    check("computed the catalog's LtHash set digest" in cas.log_text(),
          "CAS did not log computing its set digest")
    st = wait_for(lambda: cas.catalog_state()[0] == 2 and cas.catalog_state(), TIMEOUT,
                  "CAS to record the no-change version 2")
    check(st[1:] == v1[1:], "version 2 changed the catalog: %r -> %r" % (v1, st))
    p01.start()
    s01.start()
    v2 = h.wait_converged(cas, [p01, s01], TIMEOUT, "version 2 everywhere")
    sets = set()
    for s in (cas, p01, s01):
        check(s.fingerprint() == rows[s.code], "%s's rows changed in the upgrade" % s.code)
        out = json.loads(s.cli_ok("verify", "--json"))
        data = out.get("data", out)
        check(data.get("set_digest") and data["set_digest"] == data.get("recomputed_set_digest"),
              "%s: verify after the upgrade: %r" % (s.code, data))
        check(s.code == "CAS" or data.get("equal") is True, "%s: verify says %r" % (s.code, data))
        sets.add(s.sql("SELECT encode(set_digest, 'hex') FROM catalog_versions WHERE version = 2").strip())
    check(len(sets) == 1 and "" not in sets, "the sites disagree on version 2's set digest: %r" % sets)
    log("all three at version %d, rows kept, verify passes, set digest %s…" % (v2[0], sets.pop()[:16]))


if __name__ == "__main__":
    harness.main(test, "upgrade_digest")
