#!/usr/bin/env python3
"""Signed status rows: a relay cannot fake the health of sites below it.

P01 is compromised: a test hook makes it rewrite every row it relays from
S01 as "succeeded" with no error (it cannot re-sign them: S01's key is not
its own). CAS must refuse those rows, say why in its history, and never
show S01 with data S01 did not sign. The honest branch P02 -> S02 shows up
at CAS as usual, signed by each site.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

TIMEOUT = 120


def rows(site):
    return {r["site"]: r for r in site.status_json()["sites"]}


def test(h):
    cas = h.add_site("CAS")
    p01 = h.add_site("P01", parent=cas)
    p02 = h.add_site("P02", parent=cas)
    s01 = h.add_site("S01", parent=p01, listen=False)
    s02 = h.add_site("S02", parent=p02, listen=False)
    cas.start()
    cas.cli_ok("child", "add", "P01")
    cas.cli_ok("child", "add", "P02")
    p01.start(env={"SITESYNC_TEST_TAMPER": "status"})     # only P01 lies
    p02.start()
    p01.cli_ok("child", "add", "S01")
    p02.cli_ok("child", "add", "S02")
    s01.start()
    s02.start()

    wait_for(lambda: "S02" in rows(cas) and rows(cas)["S02"]["parent"] == "P02", TIMEOUT,
             "S02's signed row to reach CAS through P02")
    wait_for(lambda: "S01" in rows(p01), TIMEOUT, "S01's row to reach P01")

    def refused():
        check("S01" not in rows(cas), "CAS shows S01 from rows P01 forged: %r"
              % rows(cas).get("S01"))
        out = cas.cli_ok("history", "--json")
        msgs = json.loads(out)["messages"]
        return [m for m in msgs if m["msg_id"] == 7112 and "S01" in m["text"]]
    got = wait_for(refused, TIMEOUT, "CAS to refuse the rows P01 forged")
    check(any("signature" in m["text"] for m in got),
          "the refusal does not say the signature failed: %r" % got[0]["text"])
    check("S01" not in rows(cas), "CAS shows S01 from rows P01 forged: %r" % rows(cas).get("S01"))
    log("CAS refused P01's forged rows for S01: %s" % got[0]["text"])
    check(rows(cas)["P01"]["state"] in ("idle", "succeeded"),
          "P01's own (honestly signed) row should still be accepted")


if __name__ == "__main__":
    harness.main(test, "status_signing")
