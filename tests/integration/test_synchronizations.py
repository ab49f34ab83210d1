#!/usr/bin/env python3
"""The synchronizations view (issue 16, item 11), with the demo's catalog:

    CAS (top) -> P01          D01 (disconnected)

Every sync at a site is a row of `sitesync history` (text and --json) and
of the dashboard's data (/status "syncs"): start, end, duration, trigger
(manual, scheduled, retry, parent, import), source (upstream URL, parent,
bundle file), result, counts and error.

  - CAS: a manual sync (source: the upstream URL, counts of version 1),
    then a failed one (catalog file gone: result failed, the error).
  - P01: the pull that CAS's SyncRequest caused (trigger parent, source
    "parent CAS (address)"), then `sync --full` at P01 (trigger manual).
  - D01: an imported bundle (trigger import, source the bundle's path).
  - After a restart, /status at CAS still lists the syncs.
"""

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

TIMEOUT = 120
HEADER = ("KIND", "STARTED", "ENDED", "RESULT", "FROM", "TO", "ADDED", "CHANGED",
          "REMOVED", "EXPIRED", "DURATION", "TRIGGER", "SOURCE", "ERROR", "BY-SOURCE")


def syncs(site):
    return json.loads(site.cli_ok("history", "--json"))["syncs"]


def syncs_text(site):
    """The Syncs table of `history` as lists of cells (split on 2+ spaces)."""
    text = site.cli_ok("history")
    part = text.split("Syncs:\n", 1)
    check(len(part) == 2, "history has no Syncs table: %r" % text[-500:])
    lines = [ln for ln in part[1].splitlines() if ln.strip()]
    head = lines[0].split()
    check(tuple(head) == HEADER, "Syncs header %r" % head)
    return lines


def check_row(r, what, **want):
    for k, v in want.items():
        check(r.get(k) == v, "%s: %s is %r, want %r (row %r)" % (what, k, r.get(k), v, r))
    check(r["started_at"] and r["ended_at"] and r["started_at"] <= r["ended_at"],
          "%s: start/end %r" % (what, r))
    check(isinstance(r["duration_s"], int) and r["duration_s"] >= 0, "%s: duration %r" % (what, r))


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    shutil.copy(os.path.join(h.src, "deploy", "sample-catalog.xml"), catalog)
    url = "file://" + catalog
    cas = h.add_site("CAS", upstream=url)
    p01 = h.add_site("P01", parent=cas, listen=False)
    d01 = h.add_site("D01", listen=False, extra={"parent": {"mode": "disconnected"}})
    cas.start()
    cas.cli_ok("child", "add", "P01")
    p01.start()
    d01.start()

    cas.cli_ok("sync", "--yes", "--wait", "--timeout", str(TIMEOUT), timeout=TIMEOUT + 10)
    st1 = h.wait_converged(cas, [p01], TIMEOUT, "version 1 at P01")
    top = [r for r in cas.status_json()["sites"] if r["site"] == "CAS"][0]
    r = syncs(cas)[0]
    check_row(r, "CAS manual sync", kind="upstream", trigger="manual", source=url,
              result="succeeded", from_version=0, to_version=1, added=st1[2],
              expired=top["expired"], error=None)
    lines = syncs_text(cas)
    check("manual" in lines[1].split() and url in lines[1].split(),
          "CAS history text row %r" % lines[1])

    r = wait_for(lambda: syncs(p01) and syncs(p01)[0], 20, "P01's pull in its history")
    check_row(r, "P01 pull", kind="pull", trigger="parent", result="succeeded",
              from_version=0, to_version=1, added=st1[2])
    check(r["source"] == "parent CAS (127.0.0.1:%d)" % cas.port, "P01 source %r" % r["source"])
    p01.cli_ok("sync", "--yes", "--full", "--wait", "--timeout", str(TIMEOUT),
               timeout=TIMEOUT + 10)
    r = wait_for(lambda: len(syncs(p01)) == 2 and syncs(p01)[0], 20, "P01's own sync row")
    check_row(r, "P01 sync --full", kind="pull", trigger="manual", from_version=1, to_version=1)
    log("CAS manual sync, P01 parent pull and manual pull in the history")

    # A failed sync says so, with its error, in text and JSON.
    os.rename(catalog, catalog + ".gone")
    cas.cli("sync", "--yes", "--wait", "--timeout", str(TIMEOUT), timeout=TIMEOUT + 10)
    r = wait_for(lambda: syncs(cas)[0]["result"] == "failed" and syncs(cas)[0], 30,
                 "the failed sync row")
    check_row(r, "CAS failed sync", kind="upstream", trigger="manual", source=url,
              from_version=1, to_version=1, added=0)
    check(r["error_code"] > 0 and r["error"], "failed row without an error: %r" % r)
    line = syncs_text(cas)[1]
    check("failed" in line.split() and r["error"][:20] in line, "failed row text %r" % line)
    os.rename(catalog + ".gone", catalog)

    # An import at the disconnected site.
    bundle = h.path("full-1.bundle")
    cas.cli_ok("export", "--out", bundle, timeout=TIMEOUT)
    d01.cli_ok("import", bundle, timeout=TIMEOUT)
    r = syncs(d01)[0]
    check_row(r, "D01 import", kind="import", trigger="import", source="bundle " + bundle,
              result="succeeded", from_version=0, to_version=1, added=st1[2])
    log("failed sync and import rows")

    # The dashboard's data: the same rows, also after a restart.
    before = syncs(cas)
    cas.restart()
    got = cas.status_json().get("syncs")
    check(isinstance(got, list) and len(got) == len(before), "/status syncs after restart %r"
          % got)
    for a, b in zip(got, before):
        for k in ("kind", "trigger", "source", "result", "from_version", "to_version",
                  "added", "changed", "removed", "expired", "error_code", "started_at",
                  "ended_at", "duration_s"):
            check(a[k] == b[k], "/status syncs %s %r vs history %r" % (k, a[k], b[k]))
    log("/status lists the syncs after a restart")


if __name__ == "__main__":
    harness.main(test, "synchronizations")
