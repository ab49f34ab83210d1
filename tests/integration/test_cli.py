#!/usr/bin/env python3
"""Every documented CLI surface is read by a test, in text and --json.

CAS (top) and P01, a small catalog. Checked against the database or the
other output form: --version; history messages and syncs; child list / remove;
products, classifications and languages list / select / deselect (the
selection set through the CLI, not SQL, and seen to filter the next sync);
updates list with each filter; updates show; where; verify; every field
of status --json with its type; sync --wait; [children] approved (P03
is approved by the config alone); status --watch; import-update.
"""

import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

ENTRIES = 60
SEED = 3
TIMEOUT = 120


def jcli(site, *args):
    return json.loads(site.cli_ok(*(args + ("--json",))))


def sql_list(site, q):
    out = site.sql(q)
    return out.splitlines() if out else []


def top_sync(site, *opts):
    ends = ("6702", "6703", "7109")
    def n_ends():
        hist = jcli(site, "history", "--limit", "500")
        return sum(1 for m in hist["messages"] if str(m["msg_id"]) in ends)
    n = n_ends()
    site.cli_ok("sync", "--yes", *opts)
    wait_for(lambda: n_ends() > n, TIMEOUT, "the upstream sync to end")


def check_version(cas):
    out = cas.cli_ok("--version")
    check(re.fullmatch(r"sitesync \d+\.\d+\.\d+ \(protocol \d+\)\n", out), "--version: %r" % out)


def check_history(cas):
    hist = jcli(cas, "history", "--limit", "3")
    check(len(hist["messages"]) == 3, "history --limit 3 gave %d messages" % len(hist["messages"]))
    for m in hist["messages"]:
        check(set(m) == {"at", "site", "msg_id", "severity", "text"}, "message keys %r" % m)
    check(any(v["version"] == 1 and v["entries"] == ENTRIES and v["added"] == ENTRIES
              for v in hist["versions"]), "history versions %r" % hist["versions"])
    # Syncs: the upstream sync that made version 1 (rows are written after
    # the sync ends, from a database worker).
    sync_keys = {"kind", "started_at", "ended_at", "result", "from_version", "to_version",
                 "added", "changed", "removed", "expired", "error_code", "error",
                 "duration_s", "trigger", "source", "by_source"}
    def first_sync():
        syncs = jcli(cas, "history", "--limit", "3")["syncs"]
        return syncs[-1] if syncs else None
    wait_for(first_sync, TIMEOUT, "the upstream sync's row in history")
    hist = jcli(cas, "history", "--limit", "3")
    for s in hist["syncs"]:
        check(set(s) == sync_keys, "sync keys %r" % s)
    s = hist["syncs"][-1]
    check(s["kind"] == "upstream" and s["result"] == "succeeded" and s["from_version"] == 0
          and s["to_version"] == 1 and s["added"] == ENTRIES and s["error_code"] == 0
          and s["error"] is None and s["started_at"] <= s["ended_at"]
          and s["trigger"] == "manual" and s["duration_s"] >= 0,
          "history syncs %r" % hist["syncs"])
    rows = sql_list(cas, "SELECT kind || ' ' || result || ' ' || to_version "
                    "FROM sync_history ORDER BY id DESC LIMIT 3")
    check(rows == ["%s %s %d" % (x["kind"], x["result"], x["to_version"]) for x in hist["syncs"]],
          "history syncs %r against the table %r" % (hist["syncs"], rows))
    text = cas.cli_ok("history")
    first = hist["messages"][0]
    check("%s  CAS   %d" % (first["at"], first["msg_id"]) in text and first["text"] in text,
          "history text lacks the newest message %r:\n%s" % (first, text))
    tail = text.split("\nSyncs:\n", 1)
    check(len(tail) == 2 and re.search(r"^upstream +%s +%s +succeeded +0 +1 +%d "
                                       % (re.escape(s["started_at"]), re.escape(s["ended_at"]),
                                          ENTRIES), tail[1], re.M),
          "history text lacks the upstream sync %r:\n%s" % (s, text))


def check_children(cas):
    cas.cli_ok("child", "add", "P02")
    kids = {c["site"]: c for c in jcli(cas, "child", "list")["children"]}
    check(kids["P01"]["connected"] is True and kids["P01"]["link"] == "active"
          and kids["P01"]["catalog_version"] == 1, "P01 in child list: %r" % kids["P01"])
    check(kids["P02"]["connected"] is False, "P02 in child list: %r" % kids["P02"])
    check(kids["P03"]["connected"] is True and kids["P03"]["catalog_version"] == 1,
          "P03 ([children] approved) in child list: %r" % kids["P03"])
    text = cas.cli_ok("child", "list")
    check(re.search(r"^P01 +\S+ +yes +active +1$", text, re.M) and
          re.search(r"^P02 +\S+ +no ", text, re.M), "child list text:\n%s" % text)
    cas.cli_ok("child", "remove", "P02")
    kids = {c["site"] for c in jcli(cas, "child", "list")["children"]}
    check(kids == {"P01", "P03"}, "after child remove P02: %r" % kids)
    table = sql_list(cas, "SELECT site FROM children ORDER BY 1")
    check("P02" not in table and "P01" in table, "children table after remove: %r" % table)
    log("child list/remove read in text and --json")


def check_categories(cas, cat):
    for kind, cmd in (("product", "products"), ("classification", "classifications"),
                      ("language", "languages")):
        got = jcli(cas, cmd, "list")
        check(got["kind"] == kind, "%s list kind %r" % (cmd, got["kind"]))
        ids = sorted(i["id"] for i in got["items"])
        want = sorted(sql_list(cas, "SELECT id FROM categories WHERE kind = '%s'" % kind))
        check(ids == want and ids, "%s list %r, table %r" % (cmd, ids, want))
        text = cas.cli_ok(cmd, "list")
        check(all(i in text for i in ids), "%s list text lacks ids" % cmd)
    # Select a product through the CLI: the next sync keeps only its updates.
    all_ids = sql_list(cas, "SELECT update_id FROM updates")
    prods = jcli(cas, "products", "list")["items"]
    pick = min(prods, key=lambda p: p["updates"])
    cas.cli_ok("products", "select", pick["id"])
    sel = [p for p in jcli(cas, "products", "list")["items"] if p["selected"]]
    check([p["id"] for p in sel] == [pick["id"]], "selected after select: %r" % sel)
    check(re.search(r"^%s +yes " % re.escape(pick["id"]), cas.cli_ok("products", "list"), re.M),
          "products list text does not show %s selected" % pick["id"])
    # Most of the catalog leaves: past [upstream] max_removal_percent, so
    # the operator confirms it.
    top_sync(cas, "--allow-removal")
    n = int(cas.sql("SELECT count(*) FROM updates"))
    has = int(cas.sql("SELECT count(*) FROM updates WHERE '%s' = ANY(products)"
                      % pick["id"].replace("'", "''")))
    check(n == has == pick["updates"], "after selecting %s: %d rows, %d of it, list said %d"
          % (pick["id"], n, has, pick["updates"]))
    # import-update takes one update outside the selection; syncs keep it.
    held = set(sql_list(cas, "SELECT update_id FROM updates"))
    other = sorted(set(all_ids) - held)[0]
    out = cas.cli_ok("import-update", "--from", cat, "--id", other)
    check(re.fullmatch(r"Imported update %s revision 1; catalog version \d+\.\n" % other, out),
          "import-update said %r" % out)
    check(jcli(cas, "updates", "show", other)["source"] == "imported", "imported update's source")
    top_sync(cas)
    check(other in sql_list(cas, "SELECT update_id FROM updates"),
          "the next sync removed the update imported by hand")
    log("import-update %s outside the selection kept by the next sync" % other)
    cas.cli_ok("products", "deselect", pick["id"])
    check(not any(p["selected"] for p in jcli(cas, "products", "list")["items"]),
          "a product still selected after deselect")
    top_sync(cas)
    check(int(cas.sql("SELECT count(*) FROM updates")) == ENTRIES, "deselect did not restore")
    log("products select/deselect through the CLI filter the sync (%s: %d updates)"
        % (pick["id"], n))


def check_updates(cas):
    rows = jcli(cas, "updates", "list", "--limit", "1000")["updates"]
    check(len(rows) == ENTRIES, "updates list gave %d of %d" % (len(rows), ENTRIES))
    check(len(jcli(cas, "updates", "list", "--limit", "2")["updates"]) == 2, "--limit 2")
    u = rows[0]
    product = u["products"][0]
    filters = {
        "--product": (product, lambda r: product in r["products"]),
        "--classification": (u["classification"], lambda r: r["classification"] == u["classification"]),
        "--severity": ("Moderate", lambda r: r["severity"] == "Moderate"),
        "--text": (u["kb_article"], None),
    }
    for opt, (val, pred) in filters.items():
        got = jcli(cas, "updates", "list", opt, val, "--limit", "1000")["updates"]
        if pred is not None:
            want = sorted(r["update_id"] for r in rows if pred(r))
            check(sorted(r["update_id"] for r in got) == want and want,
                  "updates list %s %s: %d rows, want %d" % (opt, val, len(got), len(want)))
        else:
            check(u["update_id"] in [r["update_id"] for r in got], "--text %s misses %s"
                  % (val, u["update_id"]))
        text = cas.cli_ok("updates", "list", opt, val, "--limit", "1000")
        check(len(text.strip().splitlines()) == len(got) + 1,
              "updates list %s text has %d lines for %d rows" % (opt, len(text.splitlines()), len(got)))
    show = jcli(cas, "updates", "show", u["update_id"])
    check(show["update_id"] == u["update_id"] and show["revision"] == u["revision"]
          and show["products"] == u["products"] and show["kb_article"] == u["kb_article"],
          "updates show %r vs list %r" % ({k: show.get(k) for k in u}, u))
    text = cas.cli_ok("updates", "show", u["update_id"])
    check(re.search(r"^Update +%s$" % u["update_id"], text, re.M) and
          re.search(r"^KB article +%s$" % u["kb_article"], text, re.M) and show["title"] in text,
          "updates show text:\n%s" % text)
    rc, out, err = cas.cli("updates", "show", "00000000-0000-0000-0000-000000000000")
    check(rc == 2 and out == "", "updates show of an unknown id: %d %r %r" % (rc, out, err))
    log("updates list (each filter), updates show read")
    return u["update_id"]


def check_where(cas, uid):
    w = jcli(cas, "where", uid)
    check(w["update_id"] == uid and {s["site"]: s["holds"] for s in w["sites"]} ==
          {"CAS": True, "P01": True, "P03": True}, "where --json %r" % w)
    text = cas.cli_ok("where", uid)
    check("Sites holding it (3):" in text and re.search(r"^\s+P01\s+1\s+\d+$", text, re.M),
          "where text:\n%s" % text)


def check_verify(cas, p01):
    v = jcli(p01, "verify")
    st = p01.catalog_state()
    check(v["equal"] is True and v["version"] == st[0] and v["digest"] == st[1]
          and v["recomputed_digest"] == st[1] and v["rows"] == st[2] == v["entries"]
          and v["parent"] == "CAS" and v["parent_digest"] == st[1], "verify --json %r" % v)
    text = p01.cli_ok("verify")
    check(text.splitlines()[-1] == "Catalog equal to the parent's." and st[1] in text,
          "verify text:\n%s" % text)
    check(cas.cli_ok("verify").splitlines()[-1] ==
          "Top site: no parent to compare with; the catalog matches its own digest.",
          "verify at the top")


def check_bundles_text(h, cas):
    """export and import in text, against --json and the catalogs."""
    d01 = h.add_site("D01", listen=False, extra={"parent": {"mode": "disconnected"}})
    d01.start()
    st = cas.catalog_state()
    path = h.path("media", "a-bundle-file-with-a-long-name-so-the-path-is-long.bundle")
    os.makedirs(os.path.dirname(path))
    out = cas.cli_ok("export", "--out", path)
    want = ("Exported versions 0 to %d into %s: %d upserts, 0 deletes, %d bytes.\n"
            % (st[0], path, st[2], os.path.getsize(path)))
    check(out == want, "export text %r, want %r" % (out, want))
    out = d01.cli_ok("import", path)
    want = "Imported versions 0 to %d: %d upserts, 0 deletes.\n" % (st[0], st[2])
    check(out == want, "import text %r, want %r" % (out, want))
    check(d01.catalog_state() == st and d01.fingerprint() == cas.fingerprint(),
          "D01 after import %r, CAS %r" % (d01.catalog_state(), st))
    # A replay is not a refusal (docs/disconnected.md): exit 0, nothing changed.
    rc, out, err = d01.cli("import", path)
    check(rc == 0 and err == "" and out == "Nothing to do: bundle was already applied: this site "
          "holds version %d.\n" % st[0], "import replayed: %d %r %r" % (rc, out, err))
    check(d01.catalog_state() == st, "D01 after the replay %r" % (d01.catalog_state(),))
    log("export/import read in text")


def check_watch(h, cas):
    """status --watch without a terminal prints the table every SECS and
    ends (exit 2) when the daemon goes away."""
    p = subprocess.Popen([h.sitesync, "-c", cas.conf, "status", "--watch", "1"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)
        cas.stop()
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    tables = [t for t in out.split("\n\n") if re.search(r"^CAS ", t, re.M)]
    check(p.returncode == 2 and len(tables) >= 2,
          "status --watch 1 exited %r after %d tables:\n%s%s" % (p.returncode, len(tables), out, err))
    log("status --watch printed %d tables, then ended with the daemon" % len(tables))


STATUS_FIELDS = {
    "site": str, "parent": (str, type(None)), "sync_source": str, "state": str,
    "catalog_version": int, "parent_version": int, "lag_versions": int, "lag_seconds": int,
    "link": (str, type(None)), "link_last_seen": (str, type(None)),
    "last_sync_start": str, "last_sync_end": str, "version_reached_at": str,
    "last_error_code": int,
    "last_error": (str, type(None)), "next_retry": (str, type(None)),
    "consecutive_failures": int, "added": int, "changed": int, "removed": int,
    "expired": int, "version": str, "reported_at": str, "bytes_received": int,
    "progress_done": int, "progress_total": int, "last_success": str,
}
TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def check_status(cas):
    st = cas.status_json()
    check(st["site"] == "CAS" and st["top_version"] == cas.catalog_state()[0] and
          TIME_RE.fullmatch(st["generated_at"]), "status header %r"
          % {k: v for k, v in st.items() if k != "sites"})
    rows = {r["site"]: r for r in st["sites"]}
    for code, r in rows.items():
        for k, t in STATUS_FIELDS.items():
            check(k in r and isinstance(r[k], t), "%s: status field %s = %r" % (code, k, r.get(k)))
            if k in ("reported_at", "last_sync_end", "last_success", "link_last_seen",
                     "version_reached_at") and r[k]:
                check(TIME_RE.fullmatch(r[k]), "%s: %s = %r" % (code, k, r[k]))
    p = rows["P01"]
    check(p["parent"] == "CAS" and p["link"] == "active" and p["state"] == "succeeded"
          and p["lag_versions"] == 0 and p["consecutive_failures"] == 0
          and p["bytes_received"] > 0 and p["progress_done"] == p["progress_total"],
          "P01 row %r" % p)
    check(rows["CAS"]["parent"] is None and rows["CAS"]["link"] is None, "CAS row")
    check(rows["P03"]["parent"] == "CAS" and rows["P03"]["link"] == "active", "P03 row")


def test(h):
    cat = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(cat))
    h.gen_catalog(cat, ENTRIES, 1, SEED)
    # P03 is approved by [children] approved only, never with child add.
    cas = h.add_site("CAS", upstream="file://" + cat, extra={"children": {"approved": "P03"}})
    p01 = h.add_site("P01", parent=cas, listen=False)
    p03 = h.add_site("P03", parent=cas, listen=False)
    cas.start()
    cas.cli_ok("child", "add", "P01")
    p01.start()
    p03.start()
    top_sync(cas)
    h.wait_converged(cas, [p01, p03], TIMEOUT, "version 1 at P01 and P03")
    log("P03, approved in [children] approved only, holds version 1")
    check_version(cas)
    check_history(cas)
    check_children(cas)
    uid = check_updates(cas)
    check_where(cas, uid)
    check_verify(cas, p01)
    check_status(cas)
    check_categories(cas, cat)
    check_bundles_text(h, cas)
    # sync --wait returns once every site holds the new version.
    h.gen_catalog(cat, ENTRIES, 2, SEED)
    out = cas.cli_ok("sync", "--yes", "--wait", "--timeout", str(TIMEOUT), timeout=TIMEOUT + 30)
    st = cas.catalog_state()
    check(p01.catalog_state() == st, "sync --wait returned with P01 at %r, CAS at %r:\n%s"
          % (p01.catalog_state(), st, out))
    log("sync --wait returned with P01 at CAS's version %d" % st[0])
    check_watch(h, cas)


if __name__ == "__main__":
    harness.main(test, "cli")
