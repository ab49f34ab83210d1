#!/usr/bin/env python3
"""A parent serves a pull stream while it is still producing it
([replication] serve_while_producing, on by default).

    CAS ── P01, P02, P03

CAS's `updates` table is locked by a psql session (a slow database): the
spool worker writes PullStart, then waits on the lock for the rows.

1. P01 asks for its first pull. While CAS's worker still waits, P01 has
   PullStart (its pull.meta says "0 1 1": from 0 to 1, a snapshot), CAS
   logged "serving the stream while it is produced", and P01 still holds
   version 0. When the lock goes, P01 converges in that one pull (CAS
   served it the whole file, once) and `verify` passes.
2. The production fails midway (CAS at version 2, which no spool holds):
   P02 has PullStart when the waiting worker's session is terminated. CAS
   tells P02 why (Error -505, "cannot produce changes: ..."); P02 records
   the failed sync (in its history: code 505, message 6703) and still holds
   version 0, then retries and converges; `verify` passes.
3. With serve_while_producing = false (reloaded; CAS at version 3), P03
   gets nothing while the worker waits and converges once the lock goes.
"""

import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

ENTRIES = 2000
SEED = 27
TIMEOUT = 120
LOCK_SECONDS = 8
SERVING = "child %s: serving the stream while it is produced"


def producer_waiting(cas):
    """pid of CAS's backend waiting on the lock on `updates`, or None."""
    out = cas.sql("SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid "
                  "JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'updates' "
                  "AND NOT l.granted AND a.datname = current_database()")
    return int(out.splitlines()[0]) if out else None


def pull_meta(site):
    try:
        with open(os.path.join(site.state_dir, "pull.meta")) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def verify_ok(site):
    rc, out, err = site.cli("verify")
    check(rc == 0, "verify at %s exited %d: %s%s" % (site.code, rc, out, err))


def new_version(h, cas, catalog, rnd):
    """CAS syncs round RND of its catalog: version RND, whose snapshot no
    spool holds yet, so the next first pull makes CAS produce one."""
    h.gen_catalog(catalog, ENTRIES, rnd, SEED)
    cas.cli_ok("sync", "--yes")
    wait_for(lambda: cas.catalog_state()[0] == rnd, TIMEOUT, "CAS at version %d" % rnd)


def served_while_locked(h, cas, site, locker):
    """Start SITE under the lock; return once it holds PullStart while CAS's
    worker still waits for the rows."""
    version = cas.catalog_state()[0]
    mark = cas.log_mark()
    site.start()
    wait_for(lambda: producer_waiting(cas), TIMEOUT,
             "CAS's worker waiting on the lock for %s" % site.code)
    wait_for(lambda: pull_meta(site) == "0 %d 1" % version, LOCK_SECONDS,
             "%s's PullStart" % site.code)
    check(locker.poll() is None and producer_waiting(cas),
          "the lock went before %s had its PullStart: nothing shown" % site.code)
    check(SERVING % site.code in cas.log_since(mark),
          "CAS did not log serving %s while producing" % site.code)
    check(site.catalog_state()[0] == 0, "%s holds a version before PullDone" % site.code)
    return mark


def test(h):
    cas, catalog = h.add_top(ENTRIES, SEED)
    sites = [h.add_site(c, parent=cas, listen=False) for c in ("P01", "P02", "P03")]
    p01, p02, p03 = sites
    cas.start()
    for s in sites:
        cas.cli_ok("child", "add", s.code)
    cas.cli_ok("sync", "--yes")
    wait_for(lambda: cas.catalog_state()[0] == 1, TIMEOUT, "CAS at version 1")

    # 1. Served while produced.
    locker = harness.lock_table(h, cas, "updates", LOCK_SECONDS)
    mark = served_while_locked(h, cas, p01, locker)
    log("P01 got PullStart while CAS's worker waited for the rows")
    locker.communicate()
    h.wait_converged(cas, [p01], TIMEOUT, "P01 after the lock")
    served = re.findall(r"child P01: served versions 0->1 as a snapshot "
                        r"\(%d changes, (\d+) bytes\)" % ENTRIES, cas.log_since(mark))
    size = os.path.getsize(os.path.join(cas.state_dir, "spool", "full-0-1.stream"))
    check(served == [str(size)], "CAS served P01 %s bytes of a %d-byte stream" % (served, size))
    verify_ok(p01)

    # 2. The production fails after P02 has its first frames.
    new_version(h, cas, catalog, 2)
    locker = harness.lock_table(h, cas, "updates", LOCK_SECONDS)
    served_while_locked(h, cas, p02, locker)
    pmark = p02.log_mark()
    cas.sql("SELECT pg_terminate_backend(%d)" % producer_waiting(cas))
    wait_for(lambda: "reports error -505: cannot produce changes" in p02.log_since(pmark),
             TIMEOUT, "P02 told that the production failed")
    row = [r for r in p02.status_json()["sites"] if r["site"] == "P02"][0]
    # The state may already read "syncing": P02 retries at once, and the
    # retry waits on the same lock.  The failed attempt is in its history.
    failed = [x for x in row["syncs"] if x["result"] == "failed"]
    check(row["state"] in ("failed", "syncing") and row["last_error_code"] == 505 and
          [x["error_code"] for x in failed] == [505] and
          row["last_error"].startswith("cannot produce changes: ") and
          [m["msg_id"] for m in row["messages"]] == [6703],
          "P02's failed pull reads %s" % json.dumps(row))
    check(p02.catalog_state()[0] == 0, "P02 holds a version after a failed production")
    log("P02's pull failed with 505 (message 6703) when CAS's worker lost its session; P02 holds version 0")
    locker.communicate()
    h.wait_converged(cas, [p01, p02], TIMEOUT, "P02 after its retry")
    verify_ok(p02)

    # 3. Off: nothing is served before the stream is whole.
    new_version(h, cas, catalog, 3)
    cas.extra.setdefault("replication", {})["serve_while_producing"] = "false"
    cas.write_config()
    mark = cas.log_mark()
    cas.proc.send_signal(1)
    wait_for(lambda: "configuration reloaded" in cas.log_since(mark), 10, "CAS's reload")
    locker = harness.lock_table(h, cas, "updates", LOCK_SECONDS)
    mark = cas.log_mark()
    p03.start()
    wait_for(lambda: producer_waiting(cas), TIMEOUT, "CAS's worker waiting for P03")
    time.sleep(2)
    check(locker.poll() is None, "the lock went too early to tell")
    check(pull_meta(p03) is None, "P03 got PullStart before the stream was produced")
    check(SERVING % "P03" not in cas.log_since(mark), "CAS served P03 while producing")
    locker.communicate()
    h.wait_converged(cas, sites, TIMEOUT, "P03 after the lock")
    verify_ok(p03)


if __name__ == "__main__":
    harness.main(test, "serve_producing")
