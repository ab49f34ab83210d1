#!/usr/bin/env python3
"""A chain five levels deep: CAS -> L01 -> L02 -> L03 -> L04.

DESIGN §3 asks for any depth, tested to 5 levels: every sync at the top
must reach the leaf with the top's version, digest and rows, relayed by
three intermediate sites that each pull, verify and pass the request on.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

ENTRIES = 2000
SEED = 7
TIMEOUT = 240


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    h.gen_catalog(catalog, ENTRIES, 1, SEED)

    top = h.add_site("CAS", upstream="file://" + catalog)
    chain = [top]
    for i in range(1, 5):
        code = "L%02d" % i
        chain.append(h.add_site(code, parent=chain[-1], listen=(i < 4)))

    # Start top-down; each parent approves the next level before it dials.
    for parent, child in zip(chain, chain[1:]):
        if not parent.running():
            parent.start()
        parent.cli_ok("child", "add", child.code)
    chain[-1].start()

    below = chain[1:]
    leaf = chain[-1]
    for rnd in (1, 2):
        h.gen_catalog(catalog, ENTRIES, rnd, SEED)
        top.cli_ok("sync", "--yes")
        st = wait_for(lambda: top.catalog_state()[0] == rnd and top.catalog_state(),
                      TIMEOUT, "CAS to make catalog version %d" % rnd)
        got = h.wait_converged(top, below, TIMEOUT,
                               "round %d to reach L04 through the chain" % rnd)
        check(got == st, "round %d: chain converged on %r, CAS made %r"
              % (rnd, got, st))
        check(leaf.catalog_state()[1] == st[1], "L04 digest differs from CAS")
        log("round %d: L04 holds version %d with CAS's digest %s…"
            % (rnd, st[0], st[1][:16]))

    # Status rolls up from every depth: CAS lists L02..L04, which only L01
    # reports to it, each under its own parent and at the top's version.
    want = {s.code: (p.code, st[0]) for p, s in zip(chain, chain[1:])}

    def rolled_up():
        rows = {r["site"]: r for r in top.status_json()["sites"]}
        got = {c: (rows[c].get("parent"), rows[c].get("catalog_version"))
               for c in want if c in rows}
        return got == want and rows
    rows = wait_for(rolled_up, 30, "CAS to list every level with its parent")
    check(rows["L04"]["state"] == "succeeded", "L04 at CAS: %r" % rows["L04"])
    log("CAS lists L01..L04 under their parents at version %d" % st[0])

    rc, out, err = leaf.cli("verify")
    check(rc == 0, "verify at L04 exited %d: %s%s" % (rc, out, err))


if __name__ == "__main__":
    harness.main(test, "chain")
