#!/usr/bin/env python3
"""Catalog listings an operator reads (issue 16, items 12 and 13), with the
demo's catalog (deploy/sample-catalog.xml):

    CAS (top) -> P01 ([replication] keep_versions = 1)

  - `updates list --version N`: what version N changed, text and --json.
    Version 1 added every entry (one of them "removed later"); version 2
    changed one title; version 3 removed one entry. Filters apply (--text), removed entries are listed
    only without filters. A version not held yet, or one whose changes the
    site no longer keeps (P01 keeps one version), is refused with the
    reason and exit status 2 (a usage error, 1).
  - `updates list` and `updates show` print classification and product
    names (not ids), the vendor and release times in UTC (the upstream
    wrote some with +02:00); --product and --classification match ids and
    names in any case; a filter matching nothing says "No matches.".
  - `products list` says that everything is synchronized while nothing is
    selected, and what is once something is; --json marks each `synced`.
"""

import datetime
import json
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log  # noqa: E402

TIMEOUT = 120
PKG = re.compile(r"<smc:SoftwareDistributionPackage>.*?</smc:SoftwareDistributionPackage>", re.S)


def ulist(site, *args):
    return json.loads(site.cli_ok("updates", "list", "--limit", "1000", "--json", *args))


def ctl_raw(site, cmd, args):
    """One request on the control socket, as another client than ours may send it."""
    return harness.control_request(site, cmd, args, timeout=20)


def sync(h, cas, sites):
    cas.cli_ok("sync", "--yes", "--allow-removal", "--wait", "--timeout", str(TIMEOUT),
               timeout=TIMEOUT + 10)
    return h.wait_converged(cas, sites, TIMEOUT)


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    shutil.copy(os.path.join(h.src, "deploy", "sample-catalog.xml"), catalog)
    cas = h.add_site("CAS", upstream="file://" + catalog)
    p01 = h.add_site("P01", parent=cas, listen=False,
                     extra={"replication": {"keep_versions": "1"}})
    cas.start()
    cas.cli_ok("child", "add", "P01")
    p01.start()
    st1 = sync(h, cas, [p01])

    # Version 2 changes one title, version 3 removes one entry.
    text = open(catalog).read()
    first = re.search(r"PackageID=\"([0-9a-f-]+)\".*?<sdp:Title>([^<]*)", text, re.S)
    changed_id, title = first.group(1), first.group(2)
    text = text.replace("<sdp:Title>%s<" % title, "<sdp:Title>%s (revised)<" % title, 1)
    open(catalog, "w").write(text)
    st2 = sync(h, cas, [p01])
    check(st2[0] == 2, "version 2 expected, got %r" % (st2,))
    pkgs = PKG.findall(text)
    last = pkgs[-1]
    removed_id = re.search(r"PackageID=\"([0-9a-f-]+)\"", last).group(1)
    open(catalog, "w").write(text.replace(last, "", 1))
    st3 = sync(h, cas, [p01])
    check(st3[0] == 3, "version 3 expected, got %r" % (st3,))

    v1 = ulist(cas, "--version", "1")
    check(v1["version"]["version"] == 1 and v1["version"]["added"] == st1[2],
          "version 1 counts %r" % v1["version"])
    ups = v1["updates"]
    kinds = [u["change"] for u in ups]
    check(len(ups) == st1[2] and kinds.count("added") == st1[2] - 1 and
          [u["update_id"] for u in ups if u["change"] == "removed later"] == [removed_id],
          "version 1 lists %d rows (%r), want %d added and %s removed later"
          % (len(ups), set(kinds), st1[2] - 1, removed_id))
    v2 = ulist(cas, "--version", "2")
    check([(u["update_id"], u["change"]) for u in v2["updates"]] == [(changed_id, "changed")],
          "version 2 lists %r" % v2["updates"])
    check(v2["updates"][0]["title"] == title + " (revised)", "v2 title %r" % v2["updates"][0])
    v3 = ulist(cas, "--version", "3")
    check([(u["update_id"], u["change"]) for u in v3["updates"]] == [(removed_id, "removed")],
          "version 3 lists %r" % v3["updates"])
    # Filters apply to what the version changed; removed rows only unfiltered.
    f = ulist(cas, "--version", "2", "--text", "revised")
    check([u["update_id"] for u in f["updates"]] == [changed_id], "--text on v2 %r" % f)
    f = ulist(cas, "--version", "2", "--text", "no such title anywhere")
    check(f["updates"] == [], "--text matching nothing on v2 %r" % f)
    f = ulist(cas, "--version", "3", "--text", "x")
    check(f["updates"] == [], "removed rows with a filter %r" % f)
    out = cas.cli_ok("updates", "list", "--version", "2")
    lines = out.splitlines()
    check(lines[0].startswith("Version 2 (committed here ") and
          lines[0].endswith("): 0 added, 1 changed, 0 removed, 0 expired"),
          "version line %r" % lines[0])
    row = [ln for ln in lines if changed_id in ln]
    check(lines[2].split()[0] == "CHANGE" and row and row[0].split()[0] == "changed",
          "version 2 text %r" % out)
    out = cas.cli_ok("updates", "list", "--version", "3", "--text", "x")
    check(out.rstrip().endswith("No matches."), "no matches text %r" % out)
    log("versions 1, 2, 3 listed with their changes")

    # Refusals: a version not held yet, one no longer kept.
    before = cas.catalog_state()
    rc, out, err = cas.cli("updates", "list", "--version", "4")
    check(rc == 2 and "no version 4 here: this site holds version 3" in err,
          "--version 4: rc %d %r %r" % (rc, out, err))
    rc, out, err = p01.cli("updates", "list", "--version", "1")
    check(rc == 2 and "the changes of version 1 are no longer kept here" in err,
          "P01 --version 1: rc %d %r %r" % (rc, out, err))
    rc, out, err = p01.cli("updates", "list", "--version", "3", "--json")
    check(rc == 0 and [u["change"] for u in json.loads(out)["updates"]] == ["removed"],
          "P01 --version 3 %r %r" % (out, err))
    rc, out, err = cas.cli("updates", "list", "--version", "0")
    check(rc == 1 and "--version needs a catalog version" in err, "--version 0 %r" % err)
    for bad in (0, -1, "2"):
        got = ctl_raw(cas, "updates.list", {"version": bad})
        check("version must be a positive number" in json.dumps(got) and "updates" not in
              json.dumps(got), "control socket version %r: %r" % (bad, got))
    check(cas.catalog_state() == before, "a refused listing changed the catalog")
    log("refusals: not held yet, no longer kept, not a version")
    readable(h, cas)


def readable(h, cas):
    classes = json.loads(cas.cli_ok("classifications", "list", "--json"))["items"]
    title_of = {c["id"]: c["title"] for c in classes}
    ups = ulist(cas)["updates"]
    # An entry released with an offset: its UTC time is printed.
    raw = [u for u in ups if u["release_date"].endswith("+02:00")][0]
    utc = datetime.datetime.fromisoformat(raw["release_date"]).astimezone(
        datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    check(raw["release_date_utc"] == utc, "release_date_utc %r, want %s" % (raw, utc))
    out = cas.cli_ok("updates", "list", "--limit", "1000")
    head = out.splitlines()[0]
    for col in ("CLASSIFICATION", "VENDOR", "PRODUCTS", "RELEASED (UTC)"):
        check(col in head, "updates list header %r lacks %s" % (head, col))
    line = [ln for ln in out.splitlines() if raw["update_id"] in ln][0]
    cls = raw["classification"]
    check(title_of.get(cls) and title_of[cls] != cls, "classification %s has no title" % cls)
    check(title_of[cls] in line and cls not in line and raw["vendor"] in line and
          raw["release_date_utc"] in line and raw["release_date"] not in line and
          raw["product_titles"][0] in line, "updates list row %r for %r" % (line, raw))
    for u in ups:
        check(u["classification"] not in out.replace(u["update_id"], ""),
              "a classification id is printed: %s" % u["classification"])
    show = cas.cli_ok("updates", "show", raw["update_id"])
    for label, value in (("Classification", title_of[cls]), ("Vendor", raw["vendor"]),
                         ("Released (UTC)", raw["release_date_utc"]),
                         ("Products", raw["product_titles"][0])):
        check(re.search(r"^%s\s+%s" % (re.escape(label), re.escape(value)), show, re.M),
              "updates show: no %r line with %r:\n%s" % (label, value, show))
    # Filters: ids and names in any case.
    want = sorted(u["update_id"] for u in ups if u["classification"] == cls)
    for f in (title_of[cls], title_of[cls].lower(), title_of[cls].upper(), cls.upper()):
        got = sorted(u["update_id"] for u in ulist(cas, "--classification", f)["updates"])
        check(got == want, "--classification %r: %d rows, want %d" % (f, len(got), len(want)))
    prod = raw["product_titles"][0]
    want = sorted(u["update_id"] for u in ups if prod in u["product_titles"])
    got = sorted(u["update_id"] for u in ulist(cas, "--product", prod.swapcase())["updates"])
    check(want and got == want, "--product %r: %d rows, want %d" % (prod.swapcase(), len(got),
                                                                   len(want)))
    out = cas.cli_ok("updates", "list", "--classification", "no such classification")
    check(out.strip() == "No matches.", "a filter matching nothing: %r" % out)
    log("updates list/show: names, vendor, UTC times; filters in any case")

    # What is synchronized when nothing is selected.
    prods = json.loads(cas.cli_ok("products", "list", "--json"))["items"]
    check(prods and all(p["synced"] and not p["selected"] for p in prods),
          "nothing selected: products %r" % prods[:3])
    out = cas.cli_ok("products", "list")
    check("Nothing selected: all %d products are synchronized." % len(prods) in out,
          "products list, nothing selected: %r" % out[-300:])
    cas.cli_ok("products", "select", prods[0]["id"])
    prods = json.loads(cas.cli_ok("products", "list", "--json"))["items"]
    check([p["synced"] for p in prods] == [i == 0 for i in range(len(prods))],
          "one selected: synced %r" % [p["synced"] for p in prods])
    out = cas.cli_ok("products", "list")
    check("1 of %d products selected: only those are synchronized." % len(prods) in out,
          "products list, one selected: %r" % out[-300:])
    cas.cli_ok("products", "deselect", prods[0]["id"])
    log("products list says what is synchronized")


if __name__ == "__main__":
    harness.main(test, "listings")
