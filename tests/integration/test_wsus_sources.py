#!/usr/bin/env python3
"""Two sources at once: the WSUS test upstream as [upstream] and a vendor
SDP catalog as [source vendor], merged into one catalog version per sync.

1. Both sources' selected entries are published; the sync log names each
   source with its count (the [upstream] URL, which carries credentials,
   redacted).
2. A package removed from the vendor catalog is removed, and only it: the
   WSUS entries stay.
   A selection of the source's own ([source vendor] products and
   classifications, with the product no longer selected for the site)
   takes exactly the vendor's packages it lists, and no WSUS entry moves.
3. The vendor catalog unreadable: the sync fails naming the source, and
   nothing changes.
   An entry of the vendor catalog over [upstream] max_entry_bytes refuses
   the sync naming the entry and the vendor's URL (not the [upstream] one).
4. The source of each change: the sync log's "By source:" line, the 6702
   message, `history` (text and --json) and `status` (text and --json)
   give each source's added, changed and removed counts, in the same
   words; a source dropped from the configuration is named for the
   entries it loses, and the top forgets the owners afterwards.
"""

import json
import os
import pty
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402
import wsus_upstream as wu  # noqa: E402
from harness import check, log, wait_for  # noqa: E402
from test_upstream import run_sync  # noqa: E402
from test_wsus import with_upstream  # noqa: E402

PRODUCT = "Adatum BIOS"
PKG_RE = re.compile(r"<smc:SoftwareDistributionPackage>.*?</smc:SoftwareDistributionPackage>", re.S)
SDP_CLASSES = ["0fa1201d-4330-4fa8-8ae9-b877473b6441", "b54e7d24-7add-428f-8b75-90a396fa584f",
               "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83", "e6cf1350-c01b-414d-a61f-263d14d133b4"]


def ids(site):
    out = site.sql("SELECT update_id FROM updates ORDER BY update_id")
    return set(line for line in out.split("\n") if line)


def product_ids(text, classification=None):
    """Ids of the catalog's packages of PRODUCT (lower case), of one
    classification when given."""
    out = set()
    for p in PKG_RE.findall(text):
        if "<sdp:ProductName>%s</sdp:ProductName>" % PRODUCT in p and (
                classification is None or 'UpdateClassification="%s"' % classification in p):
            out.add(re.search(r'PackageID="([0-9a-fA-F-]{36})"', p).group(1).lower())
    return out


def expired(site, among):
    out = site.sql("SELECT update_id, expired FROM updates")
    return {ln.split("|")[0]: ln.split("|")[1] for ln in out.split("\n") if ln
            and ln.split("|")[0] in among}


def by_source(wsus, vendor, removed=0):
    return ("upstream: %d added, 0 changed, 0 removed; vendor: %d added, 0 changed, %d removed"
            % (wsus, vendor, removed))


def check_named(cas, out, by, what):
    """Every place an operator reads a sync names each source's counts as `by`."""
    check(" CAS By source: %s\n" % by in out, "%s: sync log 'By source:' line, want %r:\n%s"
          % (what, by, out))
    # The 6702 message and the history row are written after the log line.
    version = cas.catalog_state()[0]

    def recorded():
        hist = json.loads(cas.cli_ok("history", "--json"))
        done = [m for m in hist["messages"] if m["msg_id"] == 6702]
        return hist if done and "version %d," % version in done[0]["text"] and \
            hist["syncs"] and hist["syncs"][0]["to_version"] == version else None
    hist = wait_for(recorded, 20, "%s: the 6702 message and the history row" % what)
    msg = [m for m in hist["messages"] if m["msg_id"] == 6702][0]["text"]
    check(msg.endswith(" expired (%s)" % by), "%s: 6702 text %r, want it to end (%s)"
          % (what, msg, by))
    row = hist["syncs"][0]
    check(row["by_source"] == by and row["result"] == "succeeded",
          "%s: history --json syncs[0] %r" % (what, row))
    text = cas.cli_ok("history").split("Syncs:\n", 1)[1].splitlines()
    cells = re.split(r"\s{2,}", text[1].strip())
    check(text[0].split()[-1] == "BY-SOURCE" and cells[-1] == by,
          "%s: history text row %r" % (what, cells))
    top = wait_for(lambda: cas.status_json()["syncs"][0], 10, "CAS /status syncs")
    check(top["by_source"] == by, "%s: status --json syncs[0] %r" % (what, top))
    st = cas.cli_ok("status")
    check("\nVersion %d by source: %s\n" % (row["to_version"], by) in st,
          "%s: status text lacks 'Version %d by source: %s':\n%s" % (what, row["to_version"], by, st))


def ask_sync(site):
    """`sitesync sync` at a terminal, answered no: (exit code, stdout)."""
    master, slave = pty.openpty()
    try:
        os.write(master, b"n\n")
        p = subprocess.run([site.h.sitesync, "-c", site.conf, "sync"], stdin=slave,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    return p.returncode, p.stdout


def test(h):
    with_upstream(h, body)


def body(h, up):
    src = os.path.join(os.environ.get("SS_SOURCE_ROOT", "."), "deploy", "sample-catalog.xml")
    catalog = h.path("vendor", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    shutil.copy(src, catalog)
    with open(catalog) as f:
        text = f.read()
    vendor = product_ids(text)
    check(len(vendor) >= 10, "the sample catalog has %d %s packages" % (len(vendor), PRODUCT))

    secret = "s3cret-src-pw"
    shown = up.url.replace("http://", "http://***@", 1)
    cas = h.add_site("CAS", upstream=up.url.replace("http://", "http://sync:%s@" % secret, 1),
                     listen=False,
                     extra={"upstream": {"kind": "wsus"},
                            "source vendor": {"url": "file://" + catalog}})
    cas.start()
    cas.cli_ok("products", "select", wu.DEFENDER, PRODUCT)
    cas.cli_ok("classifications", "select", wu.DEFINITIONS, *SDP_CLASSES)

    out = run_sync(cas)
    check("Sync finished" in out, "first sync: %s" % out)
    held = ids(cas)
    wsus = held - vendor
    check(vendor <= held, "vendor entries missing: %d of %d" % (len(vendor - held), len(vendor)))
    check(wu.KB2267602 in wsus and len(wsus) > 100, "WSUS entries missing (%d)" % len(wsus))
    check("Source vendor (file://%s): 200 entries" % catalog in out,
          "the sync log does not name the vendor source:\n%s" % out)
    check("Source upstream (%s): " % shown in out and secret not in out,
          "the sync log does not name the [upstream] source redacted:\n%s" % out)
    check_named(cas, out, by_source(len(wsus), len(vendor)), "first sync")
    owners = cas.sql("SELECT source, count(*) FROM update_sources GROUP BY 1 ORDER BY 1")
    check(owners.split() == ["upstream|%d" % len(wsus), "vendor|%d" % len(vendor)],
          "update_sources after the first sync: %r" % owners)
    log("two sources: %d WSUS entries and %d vendor entries in one version" % (len(wsus), len(vendor)))

    # 2. One vendor package gone: only it is removed.
    gone = sorted(vendor)[0]
    pkgs = [p for p in PKG_RE.findall(text) if gone not in p.lower()]
    head = text[:text.index("<smc:SoftwareDistributionPackage>")]
    tail = text[text.rindex("</smc:SoftwareDistributionPackage>") + len(
        "</smc:SoftwareDistributionPackage>"):]
    with open(catalog, "w") as f:
        f.write(head + "\n".join(pkgs) + tail)
    before = cas.catalog_state()
    out = run_sync(cas)
    check("Sync finished" in out, "second sync: %s" % out)
    check(ids(cas) == held - {gone}, "removal not scoped to the vendor's package: %d held, want %d"
          % (len(ids(cas)), len(held) - 1))
    check(cas.catalog_state()[0] == before[0] + 1, "no new version for the removal")
    check_named(cas, out, by_source(0, 0, 1), "vendor package removed")
    log("vendor package removed; every WSUS entry kept; the change named as the vendor's")

    # 2b. The vendor's own selection: Security Updates of PRODUCT only, with
    # PRODUCT no longer selected for the site. Given in upper case.
    security = SDP_CLASSES[0]
    want = product_ids(text, security) - {gone}
    kept = vendor - {gone}
    check(0 < len(want) < len(kept), "the sample catalog has %d of %d %s packages in "
          "Security Updates" % (len(want), len(kept), PRODUCT))
    before_exp = expired(cas, want)
    cas.extra["source vendor"].update({"products": PRODUCT, "classifications": security.upper()})
    cas.write_config()
    cas.restart()
    cas.cli_ok("products", "deselect", PRODUCT)
    # The confirmation counts what the sync will remove, by the same rule.
    total = len(ids(cas))
    rc, pv = ask_sync(cas)
    check(rc == 0 and "The current selection removes %d of the %d updates in the catalog"
          % (len(kept) - len(want), total) in pv and "Cancelled." in pv,
          "sync's confirmation, want %d of %d removed: %r" % (len(kept) - len(want), total, pv))
    out = run_sync(cas)
    check("Sync finished" in out, "sync with the vendor's own selection: %s" % out)
    now = ids(cas)
    check(now & vendor == want, "[source vendor] selection: %d vendor entries held, want the %d "
          "Security Updates" % (len(now & vendor), len(want)))
    check(now - vendor == wsus, "the vendor's selection moved WSUS entries")
    flipped = sum(1 for k, v in expired(cas, want).items() if before_exp.get(k) != v)
    check_named(cas, out, "upstream: 0 added, 0 changed, 0 removed; vendor: 0 added, %d "
                "changed, %d removed" % (flipped, len(kept) - len(want)), "vendor's own selection")
    vendor = want | {gone}
    log("[source vendor] products/classifications: %d of its %d entries kept, WSUS untouched"
        % (len(want), len(kept)))

    # 3. The vendor catalog unreadable: the sync fails naming it, nothing changes.
    os.rename(catalog, catalog + ".gone")
    before = cas.catalog_state()
    out = run_sync(cas)
    check("Sync failed: source vendor: cannot read %s" % catalog in out,
          "a failing source: %s" % out)
    check(cas.catalog_state() == before, "a failed source changed the catalog")
    log("a failing source fails the sync by name, nothing changed")

    # 3b. An entry over [upstream] max_entry_bytes in the vendor catalog: the
    # sync is refused naming the entry and the source's URL, nothing changes.
    os.rename(catalog + ".gone", catalog)
    with open(catalog) as f:
        good = f.read()
    big_id = "b16b16b1-5000-4000-8000-000000000001"
    big = re.sub(r'PackageID="[0-9a-fA-F-]{36}"', 'PackageID="%s"' % big_id,
                 PKG_RE.findall(good)[0], count=1)
    big = big.replace("<sdp:Description>", "<sdp:Description>" + "x" * 300000, 1)
    cut = good.rindex("</smc:SoftwareDistributionPackage>") + len("</smc:SoftwareDistributionPackage>")
    with open(catalog, "w") as f:
        f.write(good[:cut] + big + good[cut:])
    cas.extra["upstream"]["max_entry_bytes"] = "200000"
    cas.write_config()
    cas.restart()
    out = run_sync(cas)
    check("Sync failed: entry %s from file://%s is " % (big_id, catalog) in out and
          "over the limit of 200000 ([upstream] max_entry_bytes); nothing was changed" in out,
          "an over-large source entry, want it named with the source's URL: %s" % out)
    check(cas.catalog_state() == before, "a refused source entry changed the catalog")
    with open(catalog, "w") as f:
        f.write(good)
    del cas.extra["upstream"]["max_entry_bytes"]
    log("an over-large entry of the vendor catalog refused by the vendor's URL")

    # 4. [source vendor] dropped: its entries go, counted as the vendor's.
    del cas.extra["source vendor"]
    cas.write_config()
    cas.restart()
    out = run_sync(cas, "--allow-removal")
    check("Sync finished" in out, "sync without the vendor source: %s" % out)
    check(ids(cas) == wsus, "without [source vendor]: %d held, want the %d WSUS entries"
          % (len(ids(cas)), len(wsus)))
    by = "upstream: 0 added, 0 changed, 0 removed; vendor: 0 added, 0 changed, %d removed" \
        % (len(vendor) - 1)
    check_named(cas, out, by, "source dropped")
    check(cas.sql("SELECT count(*) FROM update_sources").strip() == "0",
          "update_sources kept owners with one source left")
    out = run_sync(cas)
    check("Sync finished" in out and "By source:" not in out,
          "one source again: no 'By source:' line:\n%s" % out)
    log("a dropped source named for the %d entries it lost; owners forgotten" % (len(vendor) - 1))


if __name__ == "__main__":
    harness.main(test, "wsus_sources")
