#!/usr/bin/env python3
"""Entries larger than a frame, up to [upstream] max_entry_bytes (issue 15 #2).

    CAS ── P01 ── S01      every site: [replication] max_frame = 2 MiB,
                                       [upstream] max_entry_bytes = 4 MiB

1. A catalog of small entries plus BIG1, an entry of about 3.8 MiB (under
   the entry limit, nearly twice max_frame), reaches S01 two levels down
   intact: same version, digest and rows (entry hashes) at every site, and
   BIG1's stored content has the same length and md5 everywhere.
2. The next catalog changes the small entries and adds BIG2 (about 5 MiB
   packed, from 2.5 MiB of XML): CAS refuses the whole catalog before
   committing anything, naming BIG2 and the source, in status last_error,
   the sync log and history (6703); every site keeps its version and rows.
   The same catalog also travels in an export bundle to a disconnected
   D01 (same limits).
3. A catalog with BIG3 (4.5 MiB of XML in one package) is cut off while
   the package is read ("package BIG3 is larger than [upstream]
   max_entry_bytes allows"): the parser never expands it whole.
"""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

SMALL = 40
SEED = 17
TIMEOUT = 180
MIB = 1024 * 1024
LIMITS = {"replication": {"max_frame": str(2 * MIB)},
          "upstream": {"max_entry_bytes": str(4 * MIB)}}
BIG1 = "b16e0001-0000-4000-8000-000000000001"
BIG2 = "b16e0002-0000-4000-8000-000000000002"
BIG3 = "b16e0003-0000-4000-8000-000000000003"
PKG_RE = re.compile(r"<smc:SoftwareDistributionPackage>.*?</smc:SoftwareDistributionPackage>",
                    re.S)


def write_catalog(h, path, rnd, bigs):
    """SMALL generated entries of round rnd, plus {id: description bytes}."""
    h.gen_catalog(path, SMALL, rnd, SEED)
    text = open(path, encoding="utf-8").read()
    tmpl = PKG_RE.search(text).group(0)
    extra = []
    for uid, size in bigs.items():
        pkg = re.sub(r'PackageID="[^"]+"', 'PackageID="%s"' % uid, tmpl, count=1)
        words = ("%s filler " % uid[:8]) * (size // 16 + 1)
        pkg = re.sub(r"<sdp:Description>[^<]*</sdp:Description>",
                     "<sdp:Description>%s</sdp:Description>" % words[:size], pkg, count=1)
        extra.append(pkg)
    end = text.rindex("</smc:SystemsManagementCatalog>")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text[:end] + "\n".join(extra) + "\n" + text[end:])
    os.replace(tmp, path)


def entry(site, uid):
    out = site.sql("SELECT length(content), md5(content) FROM updates WHERE update_id = '%s'"
                   % uid)
    if not out:
        return None
    n, md5 = out.split("|")
    return int(n), md5


def snapshot(sites):
    return {s.code: (s.catalog_state(), s.fingerprint()) for s in sites}


def refused(cas, sites, before, want):
    """Sync CAS on `catalog`; it must fail with `want` and change nothing."""
    prev = [r for r in cas.status_json()["sites"] if r["site"] == "CAS"][0]
    cas.cli_ok("sync", "--yes")

    def failed():
        r = [r for r in cas.status_json()["sites"] if r["site"] == "CAS"][0]
        if r["state"] == "failed" and want in (r.get("last_error") or ""):
            return r
        if r["state"] == "failed" and r.get("last_sync_end") != prev.get("last_sync_end"):
            raise harness.TestFailure("CAS failed otherwise: %r" % r.get("last_error"))
        if r["state"] not in ("syncing", "failed") and r.get("catalog_version") != before["CAS"][0][0]:
            raise harness.TestFailure("CAS took the catalog: %r" % r)
        return None

    row = wait_for(failed, TIMEOUT, "CAS's sync to fail saying %r" % want)
    check(want in open(cas.sync_log).read(), "the sync log does not say %r" % want)
    hist = json.loads(cas.cli_ok("history", "--json", "--limit", "50"))
    check(any(m.get("msg_id") in (6703, "6703") and want in m.get("text", "")
              for m in hist.get("messages", [])), "no 6703 saying %r in history" % want)
    check(snapshot(sites) == before, "a site changed: %r, before %r" % (snapshot(sites), before))
    check("nothing was changed" in row["last_error"], "last_error %r" % row["last_error"])
    log("CAS refused it: %s" % row["last_error"])


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    write_catalog(h, catalog, 1, {BIG1: 1900 * 1024})
    cas = h.add_site("CAS", upstream="file://" + catalog, extra=dict(LIMITS))
    p01 = h.add_site("P01", parent=cas, extra=dict(LIMITS))
    s01 = h.add_site("S01", parent=p01, listen=False, extra=dict(LIMITS))
    h.start_tree(cas, p01, s01)
    cas.cli_ok("sync", "--yes")
    h.wait_converged(cas, [p01, s01], TIMEOUT, "BIG1 to reach S01")
    big = entry(cas, BIG1)
    check(big is not None and 3 * MIB < big[0] < 4 * MIB,
          "BIG1 at CAS is %r bytes: the test wants 3..4 MiB" % (big,))
    for s in (p01, s01):
        check(entry(s, BIG1) == big, "%s holds BIG1 as %r, CAS %r" % (s.code, entry(s, BIG1), big))
    log("BIG1 (%d bytes, max_frame %d) reached S01 intact" % (big[0], 2 * MIB))
    # The same entry through an export bundle, to a disconnected site.
    bundle = h.path("bundle.ssb")
    cas.cli_ok("export", "--out", bundle, timeout=TIMEOUT)
    d01 = h.add_site("D01", listen=False,
                     extra=dict(LIMITS, parent={"mode": "disconnected"}))
    d01.start()
    d01.cli_ok("import", bundle, timeout=TIMEOUT)
    check(d01.catalog_state() == cas.catalog_state() and entry(d01, BIG1) == big,
          "D01 after the import: %r, BIG1 %r" % (d01.catalog_state(), entry(d01, BIG1)))
    log("BIG1 also travelled in an export bundle to D01")

    sites = [cas, p01, s01]
    before = snapshot(sites)
    write_catalog(h, catalog, 2, {BIG1: 1900 * 1024, BIG2: 2560 * 1024})
    want = ("entry %s from file://%s is " % (BIG2, catalog))
    refused(cas, sites, before, want)
    check("over the limit of %d ([upstream] max_entry_bytes)" % (4 * MIB)
          in cas.status_json()["sites"][0]["last_error"], "the limit is not named")

    write_catalog(h, catalog, 2, {BIG1: 1900 * 1024, BIG3: 4608 * 1024})
    want = "package %s is larger than [upstream] max_entry_bytes allows" % BIG3
    refused(cas, sites, before, want)
    check(all(s.running() for s in sites), "a daemon died")


if __name__ == "__main__":
    harness.main(test, "large_entry")
