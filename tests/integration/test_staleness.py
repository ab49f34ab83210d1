#!/usr/bin/env python3
"""Faster, explained staleness (issue 16, item 16):

    CAS ([replication] heartbeat_timeout = 60) -> P01 -> S01

CAS waits 60 s before it calls a silent site stale. When S01 dies, P01
sees its link go down and says so in its own row at once: CAS shows S01
stale within seconds, with the reason "link to P01 down since T" (status
--json `stale_reason`, and the status table's text). When P01 itself
dies, CAS's own link to it is down: "link down since T". Once both are
back, the rows are fresh again and say no reason.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

TIMEOUT = 120
FAST = 15       # well under CAS's 60 s silence window


def row(site, code):
    return [r for r in site.status_json()["sites"] if r["site"] == code][0]


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    h.gen_catalog(catalog, 50, 1, 1)
    cas = h.add_site("CAS", upstream="file://" + catalog,
                     extra={"replication": {"heartbeat_timeout": "60"}})
    p01 = h.add_site("P01", parent=cas)
    s01 = h.add_site("S01", parent=p01, listen=False)
    cas.start()
    cas.cli_ok("child", "add", "P01")
    p01.start()
    p01.cli_ok("child", "add", "S01")
    s01.start()
    cas.cli_ok("sync", "--yes", "--wait", "--timeout", str(TIMEOUT), timeout=TIMEOUT + 10)
    h.wait_converged(cas, [p01, s01], TIMEOUT)
    wait_for(lambda: row(cas, "S01")["state"] == "succeeded", 30, "S01 succeeded at CAS")
    check(row(cas, "S01")["stale_reason"] is None, "fresh row with a reason")

    t0 = time.time()
    s01.kill()
    r = wait_for(lambda: row(cas, "S01")["state"] == "stale" and row(cas, "S01"), FAST,
                 "CAS to see S01 stale through P01")
    log("S01 stale at CAS after %.1f s: %s" % (time.time() - t0, r["stale_reason"]))
    check(r["stale_reason"].startswith("link to P01 down since 20") and r["link"] == "down",
          "S01 at CAS: %r" % r)
    out = cas.cli_ok("status")
    line = [ln for ln in out.splitlines() if "S01" in ln]
    check(line and "link to P01 down since" in line[0], "status text %r" % out)

    t0 = time.time()
    p01.kill()
    r = wait_for(lambda: row(cas, "P01")["state"] == "stale" and row(cas, "P01"), FAST,
                 "CAS to see P01 stale")
    check(r["stale_reason"].startswith("link down since 20"), "P01 at CAS: %r" % r)
    log("P01 stale at CAS after %.1f s: %s" % (time.time() - t0, r["stale_reason"]))

    p01.start()
    s01.start()
    for code in ("P01", "S01"):
        r = wait_for(lambda: row(cas, code)["state"] == "succeeded" and row(cas, code),
                     TIMEOUT, "%s fresh again at CAS" % code)
        check(r["stale_reason"] is None, "%s back, still a reason: %r" % (code, r))
    log("both back: no reason")


if __name__ == "__main__":
    harness.main(test, "staleness")
