#!/usr/bin/env python3
"""A top site whose upstream is a site of another hierarchy (sitesync://).

Hierarchy A: CAS syncs from a file catalog. Hierarchy B: TOP takes its
catalog from CAS over the replication protocol (as an approved child of
CAS), applies its own product selection, makes its own versions, and B01
below TOP ends up with exactly the selected entries. A change in A reaches
B on TOP's next sync.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

ENTRIES = 1200
SEED = 17
TIMEOUT = 180


def ids(site, where="true"):
    out = site.sql("SELECT update_id FROM updates WHERE %s ORDER BY update_id" % where)
    return set(line for line in out.split("\n") if line)


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    h.gen_catalog(catalog, ENTRIES, 1, SEED)

    cas = h.add_site("CAS", upstream="file://" + catalog)
    top = h.add_site("TOP", upstream="sitesync://127.0.0.1:%d" % cas.port)
    b01 = h.add_site("B01", parent=top, listen=False)
    cas.start()
    cas.cli_ok("child", "add", "TOP")
    cas.cli_ok("sync", "--yes")
    wait_for(lambda: cas.catalog_state()[0] == 1, TIMEOUT, "CAS to make version 1")

    product = cas.sql("SELECT p FROM updates, unnest(products) p GROUP BY p "
                      "ORDER BY count(*) DESC, p LIMIT 1").strip()
    check(product, "no product found at CAS")
    top.start()
    top.cli_ok("products", "select", product)
    top.cli_ok("child", "add", "B01")
    b01.start()

    for rnd in (1, 2):
        if rnd == 2:
            h.gen_catalog(catalog, ENTRIES, 2, SEED)
            cas.cli_ok("sync", "--yes")
            wait_for(lambda: cas.catalog_state()[0] == 2, TIMEOUT, "CAS to make version 2")
        want = ids(cas, "'%s' = ANY(products)" % product.replace("'", "''"))
        check(0 < len(want) < len(ids(cas)), "the selection should keep some, not all, entries")
        top.cli_ok("sync", "--yes")
        wait_for(lambda: top.catalog_state()[0] == rnd, TIMEOUT,
                 "TOP to make its version %d from CAS" % rnd)
        check(ids(top) == want, "round %d: TOP holds %d entries, the selection of CAS's catalog is %d"
              % (rnd, len(ids(top)), len(want)))
        h.wait_converged(top, [b01], TIMEOUT, "B01 to hold TOP's version %d" % rnd)
        check(ids(b01) == want, "round %d: B01 differs from the selected set" % rnd)
        log("round %d: TOP and B01 hold exactly the %d entries of product %r from CAS"
            % (rnd, len(want), product))


if __name__ == "__main__":
    harness.main(test, "upstream_remote")
