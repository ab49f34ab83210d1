#!/usr/bin/env python3
"""Settings from the CLI (issue 16, item 14), with the demo's catalog:

    CAS (top) -> P01

  - `sitesync settings` lists supersede_expire_months and
    purge_expired_days with value, default and range (text and --json).
  - `settings set supersede_expire_months -1` is stored, said, recorded
    as status message 7140 in `history`, and the next sync applies it (no
    entry stays expired).
  - Refused, each alone, with the reason, exit 2 and nothing changed: an
    unknown setting, a value that is not a whole number, a value out of
    range, and any setting at a site that is not the top.
  - `remove-update ID` takes an update imported by hand (import-update)
    out again: a new version, at every site, status message 7141. Refused
    with the reason and nothing changed: an update from upstream (deselect
    instead), an id not in the catalog, a malformed id, a site that is not
    the top.
"""

import json
import re
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log  # noqa: E402

TIMEOUT = 120


def settings(site):
    return {s["key"]: s for s in json.loads(site.cli_ok("settings", "--json"))["settings"]}


def expired(site):
    ups = json.loads(site.cli_ok("updates", "list", "--limit", "1000", "--json"))["updates"]
    return sum(1 for u in ups if u["expired"])


def refused(site, args, words, before):
    rc, out, err = site.cli("settings", "set", *args)
    check(rc == 2 and words in err, "settings set %r: rc %d, %r %r (want %r)"
          % (args, rc, out, err, words))
    check(settings(site) == before, "settings set %r changed the settings" % (args,))
    check(site.sql("SELECT count(*) FROM settings WHERE key IN "
                   "('supersede_expire_months', 'purge_expired_days', '%s')"
                   % args[0].replace("'", "")) == before_rows(site),
          "settings set %r wrote a row" % (args,))


def before_rows(site):
    return site.sql("SELECT count(*) FROM settings WHERE key IN "
                    "('supersede_expire_months', 'purge_expired_days')")


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    shutil.copy(os.path.join(h.src, "deploy", "sample-catalog.xml"), catalog)
    cas = h.add_site("CAS", upstream="file://" + catalog)
    p01 = h.add_site("P01", parent=cas, listen=False)
    cas.start()
    cas.cli_ok("child", "add", "P01")
    p01.start()
    cas.cli_ok("sync", "--yes", "--wait", "--timeout", str(TIMEOUT), timeout=TIMEOUT + 10)
    h.wait_converged(cas, [p01], TIMEOUT)
    n_expired = expired(cas)
    check(n_expired > 0, "the sample catalog expires some entries at once: %d" % n_expired)

    st = settings(cas)
    check(st["supersede_expire_months"]["value"] == "0" and
          st["supersede_expire_months"]["min"] == -1 and
          st["purge_expired_days"]["value"] == "0" and not st["purge_expired_days"]["set"],
          "defaults %r" % st)
    out = cas.cli_ok("settings")
    lines = out.splitlines()
    check(lines[0].split()[:4] == ["SETTING", "VALUE", "DEFAULT", "RANGE"] and
          any(ln.split()[:3] == ["purge_expired_days", "0", "0"] and "0 to 36500" in ln
              for ln in lines), "settings text %r" % out)

    # Refusals, each alone; nothing changes.
    before = settings(cas)
    refused(cas, ["supersede_expire_month", "3"], "unknown setting 'supersede_expire_month'",
            before)
    refused(cas, ["purge_expired_days", "90d"], "purge_expired_days must be a whole number, "
            "not '90d'", before)
    refused(cas, ["supersede_expire_months", "-2"], "supersede_expire_months must be from -1 "
            "to 1200, not -2", before)
    refused(cas, ["purge_expired_days", "-1"], "purge_expired_days must be from 0 to 36500, "
            "not -1", before)
    rc, out, err = p01.cli("settings", "set", "purge_expired_days", "90")
    check(rc == 2 and "P01 is not the top site" in err, "set at P01: rc %d %r" % (rc, err))
    check(p01.sql("SELECT count(*) FROM settings WHERE key = 'purge_expired_days'") == "0",
          "P01 stored the setting")
    log("refusals: unknown, not a number, out of range, not the top")

    # A change: said, stored, in the history, applied by the next sync.
    out = cas.cli_ok("settings", "set", "supersede_expire_months", "-1")
    check(out.strip() == "supersede_expire_months: 0 -> -1 (from the next sync on)",
          "set text %r" % out)
    check(settings(cas)["supersede_expire_months"]["value"] == "-1", "not stored")
    msgs = json.loads(cas.cli_ok("history", "--json"))["messages"]
    m = [x for x in msgs if x["msg_id"] == 7140]
    check(m and m[0]["text"] == "Setting supersede_expire_months changed from 0 to -1; the "
          "next sync applies it", "7140 in history: %r" % msgs[:3])
    out = cas.cli_ok("settings", "set", "supersede_expire_months", "-1")
    check("already" in out, "setting the same value again: %r" % out)
    check(len([x for x in json.loads(cas.cli_ok("history", "--json"))["messages"]
               if x["msg_id"] == 7140]) == 1, "an unchanged setting recorded a message")
    cas.cli_ok("sync", "--yes", "--wait", "--timeout", str(TIMEOUT), timeout=TIMEOUT + 10)
    h.wait_converged(cas, [p01], TIMEOUT)
    check(expired(cas) == 0 and expired(p01) == 0, "expired after -1: %d at CAS, %d at P01"
          % (expired(cas), expired(p01)))
    log("supersede_expire_months -1: stored, 7140, nothing expired after the next sync")
    remove_update(h, cas, p01, catalog)


def remove_update(h, cas, p01, catalog):
    text = open(catalog).read()
    pkg = re.search(r"<smc:SoftwareDistributionPackage>.*?</smc:SoftwareDistributionPackage>",
                    text, re.S).group(0)
    upstream_id = re.search(r'PackageID="([0-9a-f-]+)"', pkg).group(1)
    new_id = "0badc0de-0000-4000-8000-000000000001"
    one = h.path("one-update.xml")
    with open(one, "w") as f:
        f.write(text[:text.index(pkg)] + pkg.replace(upstream_id, new_id) +
                "</smc:SystemsManagementCatalog>\n")
    cas.cli_ok("import-update", "--from", one, "--id", new_id, timeout=TIMEOUT)
    st = h.wait_converged(cas, [p01], TIMEOUT)
    check(p01.sql("SELECT source FROM updates WHERE update_id = '%s'" % new_id) == "imported",
          "the imported update did not reach P01")

    before = cas.catalog_state()
    for site, args, words in (
            (cas, [upstream_id], "update %s came from upstream, not from import-update: "
             "deselect its product or classification instead" % upstream_id),
            (cas, ["0badc0de-0000-4000-8000-0000000000ff"],
             "no update 0badc0de-0000-4000-8000-0000000000ff in the catalog"),
            (cas, ["not-a-uuid"], "'not-a-uuid' is not an update id (UUID)"),
            (p01, [new_id], "remove-update runs at the top site only")):
        rc, out, err = site.cli("remove-update", *args)
        check(rc == 2 and words in err, "remove-update %r at %s: rc %d %r %r"
              % (args, site.code, rc, out, err))
        check(cas.catalog_state() == before and p01.catalog_state() == before,
              "a refused remove-update changed a catalog")
    log("remove-update refusals: upstream entry, unknown, malformed, not the top")

    out = cas.cli_ok("remove-update", new_id.upper())
    want = "Removed imported update %s revision 1; catalog version %d." % (new_id, st[0] + 1)
    check(out.strip() == want, "remove-update said %r, want %r" % (out, want))
    st2 = h.wait_converged(cas, [p01], TIMEOUT)
    check(st2[0] == st[0] + 1 and st2[2] == st[2] - 1, "after remove-update %r (before %r)"
          % (st2, st))
    for site in (cas, p01):
        check(site.sql("SELECT count(*) FROM updates WHERE update_id = '%s'" % new_id) == "0",
              "%s still holds the removed update" % site.code)
    v = json.loads(cas.cli_ok("updates", "list", "--version", str(st2[0]), "--json"))
    check([(u["update_id"], u["change"]) for u in v["updates"]] == [(new_id, "removed")],
          "the version's change: %r" % v)
    msgs = json.loads(cas.cli_ok("history", "--json"))["messages"]
    check(any(m["msg_id"] == 7141 and new_id in m["text"] for m in msgs),
          "no 7141 in history: %r" % msgs[:3])
    log("remove-update: version %d without the imported update at every site" % st2[0])


if __name__ == "__main__":
    harness.main(test, "settings")
