#!/usr/bin/env python3
"""Pending children (issue 16, item 15):

    CAS (top, [children] pending_max = 2)  <-  X01, X02, X03 (not approved)

Sites that try to connect without being approved are listed by
`child list` (text: a "Pending" table with code, address, last and first
attempt, attempts; --json: "pending") and in `status --json`
("pending_children"), newest attempt first. Only pending_max of them are
remembered (the one heard from longest ago makes room). Once approved
with `child add`, a site leaves the pending list and connects. A site
refused further down (Y01 by P01) is in the top's status too, with the
refusing site as "parent".
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

TIMEOUT = 60


def pending(site):
    return json.loads(site.cli_ok("child", "list", "--json"))["pending"]


def test(h):
    cas = h.add_site("CAS", extra={"children": {"pending_max": "2"}})
    cas.start()
    x01 = h.add_site("X01", parent=cas, listen=False)
    x01.start()
    got = wait_for(lambda: pending(cas) or None, TIMEOUT, "X01 in CAS's pending list")
    check([p["site"] for p in got] == ["X01"] and got[0]["address"].startswith("127.0.0.1")
          and got[0]["attempts"] >= 1 and got[0]["last_attempt"] >= got[0]["first_attempt"],
          "pending %r" % got)
    out = cas.cli_ok("child", "list")
    lines = out.splitlines()
    i = [n for n, ln in enumerate(lines) if ln.startswith("Pending (tried to connect")]
    check(i and lines[i[0] + 1].split()[:3] == ["SITE", "ADDRESS", "LAST"] and
          lines[i[0] + 2].split()[0] == "X01" and got[0]["address"] in lines[i[0] + 2],
          "child list text %r" % out)
    st = cas.status_json()
    check([p["site"] for p in st["pending_children"]] == ["X01"], "status pending %r"
          % st.get("pending_children"))
    wait_for(lambda: pending(cas)[0]["attempts"] >= 2, TIMEOUT, "X01's second attempt")
    log("X01 pending at CAS: %r" % pending(cas))

    # Three refused sites, two remembered.
    x02 = h.add_site("X02", parent=cas, listen=False)
    x03 = h.add_site("X03", parent=cas, listen=False)
    x02.start()
    x03.start()

    def three_seen():
        text = cas.log_text()
        return all("refusing site %s" % c in text for c in ("X01", "X02", "X03")) or None
    wait_for(three_seen, TIMEOUT, "CAS to refuse X01, X02 and X03")
    got = pending(cas)
    check(len(got) == 2 and len({p["site"] for p in got}) == 2, "pending_max 2: %r" % got)
    check(got[0]["last_attempt"] >= got[1]["last_attempt"], "newest first: %r" % got)
    log("pending_max 2 keeps %r" % [p["site"] for p in got])

    # Approved: no longer pending, connected.
    cas.cli_ok("child", "add", "X02")
    wait_for(lambda: "X02" not in [p["site"] for p in pending(cas)], TIMEOUT,
             "X02 to leave the pending list")
    kids = wait_for(lambda: [c for c in json.loads(cas.cli_ok("child", "list", "--json"))
                             ["children"] if c["site"] == "X02" and c["connected"]] or None,
                    TIMEOUT, "X02 to connect")
    check(kids[0]["link"] == "active", "X02 %r" % kids)
    log("approved X02 left the pending list and connected")

    # Refused further down: P01 (approved) refuses Y01; CAS's status lists it.
    p01 = h.add_site("P01", parent=cas)
    cas.cli_ok("child", "add", "P01")
    p01.start()
    y01 = h.add_site("Y01", parent=p01, listen=False)
    y01.start()
    got = wait_for(lambda: [p for p in cas.status_json()["pending_children"]
                            if p["site"] == "Y01"] or None, TIMEOUT,
                   "Y01, refused by P01, in CAS's status")
    check(got[0]["parent"] == "P01" and got[0]["address"].startswith("127.0.0.1") and
          got[0]["attempts"] >= 1, "Y01 at CAS: %r" % got)
    check(all(p["parent"] == "CAS" for p in cas.status_json()["pending_children"]
              if p["site"] != "Y01"), "CAS's own refusals name CAS")
    log("Y01, refused by P01, listed in CAS's status: %r" % got[0])


if __name__ == "__main__":
    harness.main(test, "pending")
