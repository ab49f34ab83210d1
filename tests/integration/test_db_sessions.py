#!/usr/bin/env python3
"""Database sessions cut while idle (a PostgreSQL restart, an operator's
pg_terminate_backend): the next command is served, not failed.

Every worker session of the site's database is terminated (the writer
lock's session is left: losing it is a step-down, tested elsewhere) and
`verify --json` runs at once, several times: each worker that takes a job
must notice its session is gone and reconnect first. Without that check
the first command answers "server closed the connection unexpectedly".
"""

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log  # noqa: E402

TIMEOUT = 120


def cut_sessions(h, site):
    """Terminate the site's idle worker sessions and wait until they are gone."""
    n = h.pg.query("postgres", "SELECT count(pg_terminate_backend(a.pid, 10000)) FROM "
                   "pg_stat_activity a WHERE a.datname = '%s' AND a.pid <> pg_backend_pid() "
                   "AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND "
                   "l.locktype = 'advisory' AND l.granted)" % site.dbname)
    return int(n)


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    shutil.copy(os.path.join(h.src, "deploy", "sample-catalog.xml"), catalog)
    cas = h.add_site("CAS", upstream="file://" + catalog)
    cas.start()
    cas.cli_ok("sync", "--yes", "--wait", "--timeout", str(TIMEOUT), timeout=TIMEOUT + 10)
    want = json.loads(cas.cli_ok("verify", "--json"))
    check(want.get("recomputed_digest") == want.get("digest") and want.get("version") == 1,
          "verify before: %r" % want)

    for round_ in range(2):
        n = cut_sessions(h, cas)
        check(n >= 1, "no worker session to terminate")
        log("round %d: %d worker sessions terminated" % (round_, n))
        for i in range(6):
            rc, out, err = cas.cli("verify", "--json", timeout=60)
            check(rc == 0 and out.strip().startswith("{"),
                  "verify %d after the sessions were cut: rc %d %r %r" % (i, rc, out, err))
            got = json.loads(out)
            check(got.get("version") == 1 and got.get("digest") == want["digest"] and
                  got.get("recomputed_digest") == want["digest"], "verify %d: %r" % (i, got))
    # Status still answers and the site never read failed.
    row = [r for r in cas.status_json()["sites"] if r["site"] == "CAS"][0]
    check(row["state"] == "succeeded", "CAS row after the cuts: %r" % row)
    log("every command after the cuts was served")


if __name__ == "__main__":
    harness.main(test, "db_sessions")
