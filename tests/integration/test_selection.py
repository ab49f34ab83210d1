#!/usr/bin/env python3
"""What an operator reads about syncs and selections (issue 16, items 1, 3, 5).

    CAS (top, file:// upstream) -> P01

  - `history` lists the syncs (text table and --json): CAS's upstream sync,
    P01's pull, with versions and counts.
  - `languages select xx` (unknown) is refused, exit 2, naming the id; no
    row appears, nothing else changes. An id in another case selects the
    known id, stored in its own spelling; deselect takes it back.
  - A selection that would remove more than [upstream] max_removal_percent
    of the catalog stops the sync: state failed, message 7130 with the
    counts, the catalog unchanged at every site; `sync --allow-removal`
    then applies it.
  - A restart keeps the last sync: last_sync_end / last_success in
    status --json and the LAST SYNC column, at both sites.
  - A site gone silent while the top moves on has a growing lag_seconds
    (status --json, the BEHIND column, sitesync_lag_seconds in /metrics),
    and `sync --wait` names it and exits 3 instead of waiting the timeout.
  - The sync history keeps [status] sync_history_rows rows.
"""

import json
import os
import re
import select
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import PortLock, check, log, wait_for  # noqa: E402

ENTRIES = 400
SEED = 11
TIMEOUT = 120


def own_row(site):
    for r in site.status_json()["sites"]:
        if r["site"] == site.code:
            return r
    raise harness.TestFailure("%s lists no row for itself" % site.code)


def syncs(site):
    return json.loads(site.cli_ok("history", "--json")).get("syncs", [])


def ask_sync(site):
    """`sitesync sync` on a terminal, answered "n": (exit, what it printed)."""
    master, slave = os.openpty()
    p = subprocess.Popen([site.h.sitesync, "-c", site.conf, "sync"], stdin=slave,
                         stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    buf, answered, deadline = b"", False, time.monotonic() + 30
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                data = os.read(master, 4096)
            except OSError:         # EIO: the CLI exited
                break
            if not data:
                break
            buf += data
        if not answered and b"[y/N]" in buf:
            os.write(master, b"n\n")
            answered = True
        if p.poll() is not None and not r:
            break
    os.close(master)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    return p.returncode, buf.decode(errors="replace")


def categories(site):
    return site.sql("SELECT kind || ':' || id || ':' || selected FROM categories ORDER BY 1")


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    h.gen_catalog(catalog, ENTRIES, 1, SEED)
    http = PortLock()
    cas = h.add_site("CAS", upstream="file://" + catalog,
                     extra={"http": {"listen": "127.0.0.1:%d" % http.port},
                            "status": {"sync_history_rows": "10"}})
    p01 = h.add_site("P01", parent=cas, listen=False)
    h.start_tree(cas, p01)
    cas.cli_ok("sync", "--yes", "--wait", "--timeout", str(TIMEOUT), timeout=TIMEOUT + 10)
    st = h.wait_converged(cas, [p01], TIMEOUT, "P01 to pull version 1")

    # 1. history shows the syncs, in text and --json.
    def synced(site, kind):
        rows = syncs(site)
        return rows[0] if rows and rows[0].get("kind") == kind else None
    up = wait_for(lambda: synced(cas, "upstream"), 20, "CAS history to list its sync")
    check(up["result"] == "succeeded" and up["from_version"] == 0 and up["to_version"] == 1
          and up["added"] == st[2] and up["started_at"] and up["ended_at"],
          "CAS sync row %r (catalog %r)" % (up, st))
    pull = wait_for(lambda: synced(p01, "pull"), 20, "P01 history to list its pull")
    check(pull["result"] == "succeeded" and pull["to_version"] == 1 and pull["added"] == st[2],
          "P01 pull row %r" % pull)
    text = cas.cli_ok("history")
    part = text.split("Syncs:", 1)[-1]
    check(re.search(r"^upstream\s+\S+Z\s+\S+Z\s+succeeded\s+0\s+1\s+%d\s" % st[2], part, re.M),
          "CAS history text shows no sync row:\n%s" % text)
    check(re.search(r"^pull\s+\S+Z\s+\S+Z\s+succeeded\s+0\s+1\s", p01.cli_ok("history"), re.M),
          "P01 history text shows no pull row")
    log("history lists the upstream sync and the pull")

    # 3a. Unknown ids are refused; another case selects the known id.
    before = categories(cas)
    for cmd, bad in (("languages", "xx"), ("products", "No Such Product"),
                     ("classifications", "security updatez")):
        rc, out, err = cas.cli(cmd, "select", bad)
        check(rc == 2 and ("'%s' is known" % bad) in err and "nothing was changed" in err,
              "%s select %r: exit %d %r %r" % (cmd, bad, rc, out, err))
    # A good id and a bad one together: all or nothing.
    lang = cas.sql("SELECT id FROM categories WHERE kind = 'language' ORDER BY id LIMIT 1")
    rc, out, err = cas.cli("languages", "select", lang, "xx")
    check(rc == 2, "languages select %s xx: exit %d" % (lang, rc))
    check(categories(cas) == before, "a refused select changed the categories:\n%s\n%s"
          % (before, categories(cas)))
    rc, out, err = cas.cli("languages", "deselect", "xx")
    check(rc == 2 and "'xx' is known" in err, "deselect xx: %d %r" % (rc, err))
    cls = cas.sql("SELECT id FROM categories WHERE kind = 'classification' ORDER BY id LIMIT 1")
    out = cas.cli_ok("classifications", "select", cls.upper())
    check("Selected classification(s): %s." % cls in out, "select in upper case said %r" % out)
    js = json.loads(cas.cli_ok("classifications", "select", cls.upper(), "--json"))
    check(js.get("selected") == [cls], "select --json: %r" % js)
    check(cas.sql("SELECT count(*) FROM categories WHERE kind = 'classification' AND selected")
          == "1" and cas.sql("SELECT count(*) FROM categories WHERE id = '%s'" % cls.upper())
          == "0", "the selection did not land on the known id")
    cas.cli_ok("classifications", "deselect", cls.upper())
    check(categories(cas) == before, "select + deselect left %s" % categories(cas))
    log("unknown ids refused, case-insensitive ids stored canonical")

    # 3b. A selection keeping a small share: the sync stops, nothing moves.
    prod, n = cas.sql("SELECT p, count(*) FROM updates, unnest(products) p GROUP BY p "
                      "ORDER BY count(*), p LIMIT 1").split("|")
    check(int(n) * 2 < st[2], "product %s holds %s of %d" % (prod, n, st[2]))
    cas.cli_ok("products", "select", prod)
    # On a terminal, the confirmation says what the selection will remove.
    rc, text = ask_sync(cas)
    want = "The current selection removes %d of the %d updates in the catalog from every site." \
        % (st[2] - int(n), st[2])
    check(rc == 0 and want in text and "Cancelled." in text
          and text.index(want) < text.index("[y/N]"), "sync on a terminal: %d %r" % (rc, text))
    check(cas.catalog_state() == st, "a cancelled sync moved the catalog")
    rc, text = ask_sync(p01)
    check(rc == 0 and "Pull the catalog from the parent site now? [y/N]" in text
          and "whole hierarchy" not in text and "Cancelled." in text,
          "sync on a terminal at P01: %d %r" % (rc, text))
    rc, out, err = cas.cli("sync", "--yes", "--wait", "--timeout", str(TIMEOUT),
                           timeout=TIMEOUT + 10)
    check(rc == 2, "sync that removes too much exited %d: %s%s" % (rc, out, err))
    row = own_row(cas)
    check(row["state"] == "failed" and row["last_error_code"] == 509
          and "max_removal_percent = 50" in (row["last_error"] or "")
          and "--allow-removal" in row["last_error"], "CAS row after the guard: %r" % row)
    check(cas.catalog_state() == st, "the refused sync moved the catalog")
    msgs = json.loads(cas.cli_ok("history", "--json"))["messages"]
    guard = [m for m in msgs if m["msg_id"] == 7130]
    check(guard and "would remove %d of %d" % (st[2] - int(n), st[2]) in guard[0]["text"],
          "no 7130 message with the counts: %r" % msgs[:5])
    check(syncs(cas)[0]["result"] == "failed", "history: %r" % syncs(cas)[0])
    text = cas.cli_ok("status")
    check("max_removal_percent" in text, "status text hides the reason:\n%s" % text)
    check(p01.catalog_state() == st, "P01 moved")
    log("sync stopped before removing %d of %d entries" % (st[2] - int(n), st[2]))
    cas.cli_ok("sync", "--yes", "--allow-removal", "--wait", "--timeout", str(TIMEOUT),
               timeout=TIMEOUT + 10)
    st2 = h.wait_converged(cas, [p01], TIMEOUT, "P01 to pull the confirmed removal")
    check(st2[0] == 2 and st2[2] == int(n), "after --allow-removal: %r" % (st2,))

    # 5. A restart keeps the last sync.
    want = {}
    for s in (cas, p01):
        r = own_row(s)
        check(r.get("last_success") and r.get("last_sync_end"), "%s row %r" % (s.code, r))
        want[s.code] = (r["last_sync_end"], r["last_success"], r["state"])
    before = cas.status_json()["generated_at"]
    time.sleep(1.1)  # times are whole seconds: the restarts come strictly after
    for s in (p01, cas):
        s.restart()
    for s in (cas, p01):
        r = own_row(s)
        got = (r.get("last_sync_end"), r.get("last_success"), r.get("state"))
        check(got == want[s.code], "%s after restart: %r, before %r" % (s.code, got, want[s.code]))
        # When the version was committed, from the database: not the restart.
        check(r.get("version_reached_at") and r["version_reached_at"] <= before,
              "%s version_reached_at %r after a restart at %s"
              % (s.code, r.get("version_reached_at"), before))
    text = cas.cli_ok("status")
    check(text.count(want["CAS"][0].replace("T", " ").rstrip("Z")[:16]) >= 1
          or want["CAS"][0] in text, "status text after restart:\n%s" % text)
    log("last sync kept across restarts")

    # 4. P01 dies; CAS moves on. Its lag in seconds grows.
    def p01_reported():
        r = [x for x in cas.status_json()["sites"] if x["site"] == "P01"]
        return r and r[0]["catalog_version"] == 2 and r[0]["link"] == "active"
    wait_for(p01_reported, TIMEOUT, "P01 to report to CAS again")
    p01.kill()
    cas.cli_ok("products", "deselect", prod)     # everything comes back: version 3
    cas.cli_ok("sync", "--yes")
    wait_for(lambda: cas.catalog_state()[0] == 3, TIMEOUT, "CAS to make version 3")
    time.sleep(3)
    r = [x for x in cas.status_json()["sites"] if x["site"] == "P01"][0]
    check(r["lag_versions"] == 1 and r["lag_seconds"] >= 3 and r["state"] == "stale",
          "silent P01 at CAS: lag %r versions, %r s, state %r"
          % (r["lag_versions"], r["lag_seconds"], r["state"]))
    text = cas.cli_ok("status")
    check(re.search(r"P01\s+stale\s+2\s+1 \(\d+s\)", text),
          "BEHIND column of silent P01 shows no time:\n%s" % text)
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % http.port, timeout=10) as f:
        metrics = f.read().decode()
    m = re.search(r'^sitesync_lag_seconds\{site="P01"[^}]*\} (\d+)', metrics, re.M)
    check(m and int(m.group(1)) >= 3, "sitesync_lag_seconds of P01: %r"
          % (m.group(0) if m else None))
    log("silent P01: %d s behind" % r["lag_seconds"])

    # sync --wait does not wait the timeout for the dead P01: it names it and
    # exits 3 once every reachable site is done.
    t0 = time.monotonic()
    rc, out, err = cas.cli("sync", "--yes", "--wait", "--timeout", "90", timeout=120)
    took = time.monotonic() - t0
    check(rc == 3 and "not waiting for 1 site(s) that cannot take version 3 now: "
          "P01 (stale, version 2)" in err and "Every reachable site holds version 3." in out,
          "sync --wait with P01 dead: exit %d after %.0fs: %r %r" % (rc, took, out, err))
    check(took < 45, "sync --wait took %.0fs with P01 dead" % took)
    log("sync --wait left the dead P01 out after %.1fs (exit 3)" % took)

    # The sync history is bounded by [status] sync_history_rows (10 here).
    for _ in range(8):
        cas.cli("sync", "--yes", "--wait", "--timeout", "60", timeout=90)

    def capped():
        rows = json.loads(cas.cli_ok("history", "--json", "--limit", "100"))["syncs"]
        return rows if len(rows) == 10 and rows[0]["result"] == "unchanged" else None
    rows = wait_for(capped, 20, "CAS history to keep its newest 10 syncs")
    total = cas.sql("SELECT count(*) FROM sync_history")
    check(total == "10", "sync_history holds %s rows" % total)
    log("sync history capped at 10 rows")


if __name__ == "__main__":
    harness.main(test, "selection")
