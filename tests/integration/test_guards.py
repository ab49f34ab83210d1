#!/usr/bin/env python3
"""One guard at a time: each case reaches exactly one check with every other
check satisfied, and asserts the exact refusal and that nothing changed.

    test_guards.py CASE      (registered in meson as guard_CASE)

  digest          a relay whose stored rows no longer match its digest
                  (one row's revision changed with SQL): the stream's count
                  is right and no manifest is configured, so only the digest
                  check before commit can stop it (replication/apply.c)
  signature       a manifest signed by a key the child does not trust,
                  everything else right (replication/manifest.c)
  stripped        a child that trusts a key pulls a version without any
                  manifest: verification must not be skipped (apply.c)
  stale           a child lagging one version for longer than
                  [status] stale_seconds reads `stale` (replication/status.c)
  classification  a classification selected through the CLI filters the top
                  site's catalog (upstream/sync.c)
  schedule        a per-minute [schedule] cron fires twice: the timer is
                  re-armed after it fires (server/topsync.c)

Each case is its own meson test so the mutant runner (tests/mutants/run)
runs only the one it needs.
"""

import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, keypair, log, wait_for  # noqa: E402

ENTRIES = 400
SEED = 11
TIMEOUT = 120

SS_EDIGEST = -506
SS_ESIG = -517
MSG_SYNC_STARTED = 6701
MSG_SYNC_FAILED = 6703
MSG_SITE_STALE = 7105



def catalog(h, entries=ENTRIES, rnd=1):
    path = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    h.gen_catalog(path, entries, rnd, SEED)
    return path


def row(site, code):
    for r in site.status_json()["sites"]:
        if r["site"] == code:
            return r
    return None


def messages(site, msg_id):
    hist = json.loads(site.cli_ok("history", "--json", "--limit", "500"))
    return [m for m in hist.get("messages", []) if str(m.get("msg_id")) == str(msg_id)]


def top_sync(site, *opts):
    """Run one upstream sync at the top and wait for its end, changed or not."""
    ends = (6702, MSG_SYNC_FAILED, 7109)     # done, failed, unchanged
    n = sum(len(messages(site, m)) for m in ends)
    site.cli_ok("sync", "--yes", *opts)
    wait_for(lambda: sum(len(messages(site, m)) for m in ends) > n, TIMEOUT,
             "%s's upstream sync to end" % site.code)


def refused_pull(child, code, words, what):
    """`child` reports its own failed pull: code, words; catalog still empty."""
    def failed():
        st = child.catalog_state()
        check(st is None or st[0] == 0, "%s accepted %s: it holds %r" % (child.code, what, st))
        r = row(child, child.code)
        return r if r and r["state"] == "failed" else None
    r = wait_for(failed, TIMEOUT, "%s to refuse %s" % (child.code, what))
    # Status rows carry the code as a positive number (SS_ESIG -517 -> 517).
    check(r["last_error_code"] == -code and words in (r["last_error"] or ""),
          "%s refused %s with %r %r, want %d and %r"
          % (child.code, what, r["last_error_code"], r["last_error"], code, words))
    check(r["catalog_version"] == 0, "%s status shows version %r" % (child.code, r))
    st = child.catalog_state()
    check(st is None or st[0] == 0, "%s applied it: %r" % (child.code, st))
    check(child.fingerprint()[0] == 0, "%s holds rows: %r" % (child.code, child.fingerprint()))
    got = [m for m in messages(child, MSG_SYNC_FAILED) if words in m.get("text", "")]
    check(got, "%s has no message %d naming %r" % (child.code, MSG_SYNC_FAILED, words))
    log("%s refused %s: %d %s" % (child.code, what, r["last_error_code"], r["last_error"]))


def case_digest(h):
    cat = catalog(h)
    cas = h.add_site("CAS", upstream="file://" + cat)
    p01 = h.add_site("P01", parent=cas)
    s01 = h.add_site("S01", parent=p01, listen=False)
    h.start_tree(cas, p01)
    cas.cli_ok("sync", "--yes")
    st = h.wait_converged(cas, [p01], TIMEOUT, "version 1 at P01")
    # P01's rows drift from its digest: same count, one revision changed.
    p01.stop()
    # revision: what S01 hashes from the stream; entry_hash: what P01's own
    # verify sums.
    p01.sql("UPDATE updates SET revision = revision + 1, entry_hash = "
            "sha256(entry_hash) WHERE update_id = "
            "(SELECT update_id FROM updates ORDER BY update_id LIMIT 1)")
    check(p01.catalog_state() == st, "P01's stored version/digest moved: %r" % (p01.catalog_state(),))
    p01.start()
    # verify says what is wrong in text as in --json (#14): the local rows,
    # not the parent.
    rc, out, err = p01.cli("verify")
    check(rc == 2 and "local rows do not match the local digest" in err
          and "differs from parent" not in out + err,
          "verify at P01 with drifted rows: %d %r %r" % (rc, out, err))
    v = json.loads(p01.cli("verify", "--json")[1])
    check(v.get("equal") is False and
          v.get("reason") == "stored rows do not match the stored digest" and
          v.get("recomputed_digest") != v.get("digest") and v.get("rows") == st[2],
          "verify --json at P01: %r" % v)
    p01.cli_ok("child", "add", "S01")
    s01.start()
    refused_pull(s01, SS_EDIGEST, "catalog set digest mismatch at version 1",
                 "rows that do not match P01's digest")


def unsigned_refused(h, cas_extra, p01_pub, msg, what):
    """CAS (CAS_EXTRA) syncs; P01, trusting only P01_PUB, refuses its pull."""
    cat = catalog(h)
    cas = h.add_site("CAS", upstream="file://" + cat, extra=cas_extra)
    p01 = h.add_site("P01", parent=cas, listen=False, extra={"trust": {"public_key": p01_pub}})
    cas.start()
    cas.cli_ok("child", "add", "P01")
    p01.start()
    cas.cli_ok("sync", "--yes")
    refused_pull(p01, SS_ESIG, msg, what)


def case_signature(h):
    good_key, good_pub = keypair(h, "good")
    _, other_pub = keypair(h, "other")
    unsigned_refused(h, {"trust": {"signing_key": good_key, "public_key": good_pub}}, other_pub,
                     "the manifest of version 1 is not signed by a trusted key",
                     "a manifest signed by an untrusted key")


def case_stripped(h):
    _, pub = keypair(h, "good")
    unsigned_refused(h, None, pub, "version 1 carries no signed manifest",   # CAS signs nothing
                     "a version without a manifest")


def case_stale(h):
    # A slow pull keeps P01 one version behind for several seconds while it
    # is connected and reporting: only the lag in seconds makes it stale.
    cat = catalog(h, 300)
    cas = h.add_site("CAS", upstream="file://" + cat,
                     extra={"replication": {"rate_limit_kib": "96"},
                            "status": {"stale_seconds": "2"}})
    p01 = h.add_site("P01", parent=cas, listen=False)
    cas.start()
    cas.cli_ok("child", "add", "P01")
    p01.start()
    wait_for(lambda: (row(cas, "P01") or {}).get("link") == "active", TIMEOUT,
             "P01 to link to CAS")
    cas.cli_ok("sync", "--yes")

    def stale():
        r = row(cas, "P01")
        if r and r["state"] == "stale":
            return r
        st = p01.catalog_state()
        check(st is None or st[0] == 0, "P01 caught up (%r) without ever reading stale: %r"
              % (st, r))
        return None
    r = wait_for(stale, 60, "CAS to show P01 stale while it lags one version")
    check(r["lag_versions"] == 1 and r["lag_seconds"] > 2 and r["link"] == "active",
          "P01 stale row: %r" % r)
    check(p01.catalog_state() is None or p01.catalog_state()[0] == 0,
          "P01 already holds %r" % (p01.catalog_state(),))
    got = wait_for(lambda: [m for m in messages(cas, MSG_SITE_STALE) if "P01" in m["text"]],
                   30, "message %d for P01 at CAS" % MSG_SITE_STALE)
    log("P01 stale at CAS with lag %d version, %d s: %s"
        % (r["lag_versions"], r["lag_seconds"], got[0]["text"]))
    h.wait_converged(cas, [p01], 120, "P01 to finish its slow pull")
    r = wait_for(lambda: (row(cas, "P01") or {}).get("state") == "succeeded" and row(cas, "P01"),
                 30, "P01 to read succeeded once it caught up")
    check(r["lag_versions"] == 0 and r["lag_seconds"] == 0, "P01 caught up: %r" % r)


def case_classification(h):
    cat = catalog(h)
    cas = h.add_site("CAS", upstream="file://" + cat)
    cas.start()
    top_sync(cas)
    check(cas.catalog_state()[0] == 1, "CAS after the first sync: %r" % (cas.catalog_state(),))
    counts = dict(line.split("|") for line in cas.sql(
        "SELECT classification, count(*) FROM updates GROUP BY 1").splitlines())
    check(len(counts) > 1, "the catalog has one classification only: %r" % counts)
    pick = sorted(counts, key=lambda k: int(counts[k]))[0]
    listed = json.loads(cas.cli_ok("classifications", "list", "--json"))
    check(any(pick in json.dumps(x) for x in (listed if isinstance(listed, list)
                                              else listed.get("categories", listed.values()))),
          "classifications list does not show %s: %r" % (pick, listed))
    cas.cli_ok("classifications", "select", pick)
    # Only the least common classification stays: past [upstream]
    # max_removal_percent, so the operator confirms the removal.
    top_sync(cas, "--allow-removal")
    got = dict(line.split("|") for line in cas.sql(
        "SELECT classification, count(*) FROM updates GROUP BY 1").splitlines())
    check(got == {pick: counts[pick]},
          "after selecting %s the catalog holds %r (had %r)" % (pick, got, counts))
    check(cas.catalog_state()[2] == int(counts[pick]), "catalog_state %r" % (cas.catalog_state(),))
    log("classification %s selected: %s of %d entries kept"
        % (pick, counts[pick], sum(int(v) for v in counts.values())))


def case_schedule(h):
    cat = catalog(h, 100)
    cas = h.add_site("CAS", upstream="file://" + cat,
                     extra={"schedule": {"cron": "* * * * *", "utc": "true"}})
    # Start early in a minute so the first run is not a race with startup.
    while time.time() % 60 > 55:
        time.sleep(1)
    cas.start()
    line = "scheduled upstream sync (* * * * *)"
    wait_for(lambda: cas.log_text().count(line) >= 1, 75, "the first scheduled run")
    wait_for(lambda: cas.log_text().count(line) >= 2, 70,
             "the second scheduled run, a minute after the first")
    starts = messages(cas, MSG_SYNC_STARTED)
    check(len(starts) >= 2, "CAS recorded %d sync starts: %r" % (len(starts), starts))
    check(cas.catalog_state()[0] == 1, "CAS state %r" % (cas.catalog_state(),))
    log("two scheduled runs seen")
    # A run missed while the daemon was down is logged in ISO 8601 UTC, not
    # as a raw epoch (#14).
    cas.stop()
    cas.sql("UPDATE settings SET value = '%d' WHERE key = 'last_upstream_sync'"
            % (int(time.time()) - 600))
    mark = cas.log_mark()
    cas.start()
    pat = re.compile(r"the scheduled sync of (\d{4}-\d\d-\d\dT\d\d:\d\d:00Z) was missed "
                     r"while the daemon was down")
    m = wait_for(lambda: pat.search(cas.log_since(mark)), 30, "the missed run's log line")
    log("missed run logged as %s" % m.group(1))


CASES = {n[5:]: f for n, f in globals().items() if n.startswith("case_")}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: test_guards.py %s" % "|".join(sorted(CASES)), file=sys.stderr)
        sys.exit(2)
    harness.main(CASES[sys.argv[1]], "guard_" + sys.argv[1])
