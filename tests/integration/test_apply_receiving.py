#!/usr/bin/env python3
"""A pull is applied while it arrives (issue 17), and the guarantees hold:

    CAS (rate-limited, so a full pull takes seconds) -> P01, P02

  - P01 (`[replication] apply_while_receiving = true`): while its
    stream is still arriving, its database already runs the apply's COPY in
    an open transaction, and its catalog still reads version 0 (nothing is
    visible before the commit). It converges with CAS's digest.
  - P02 (the default, false): no apply runs while its stream
    arrives; it converges the same.
Rolled-back applies behind a cut stream are test_resume's (a child killed
mid-stream resumes) and test_faults' (link cut mid-pull, database gone).
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

ENTRIES = 1500
SEED = 9
RATE_KIB = 1024
TIMEOUT = 180


def apply_running(h, site):
    """The site's apply COPY in an open transaction, right now?"""
    n = h.pg.query("postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = '%s' "
                   "AND xact_start IS NOT NULL AND query ILIKE 'COPY %%FROM STDIN%%'"
                   % site.dbname)
    return int(n) > 0


def stream_size(site):
    try:
        return os.path.getsize(os.path.join(site.state_dir, "pull.stream"))
    except OSError:
        return None


def served_bytes(cas, code):
    with open(cas.logfile) as f:
        m = re.findall(r"child %s: served versions 0->1 as a snapshot \(\d+ changes, (\d+) "
                       r"bytes\)" % code, f.read())
    return int(m[-1]) if m else None


def pull_once(h, cas, site):
    """Start site, watch its first pull; return (apply seen while arriving,
    stream bytes stored when it was first seen)."""
    site.start()
    seen_at = None
    while True:
        size = stream_size(site)
        if site.catalog_state()[0] == 1:
            break
        if size and seen_at is None and apply_running(h, site):
            # Still arriving? Read the size again after the check.
            seen_at = stream_size(site)
    return seen_at


def test(h):
    cas, _ = h.add_top(ENTRIES, SEED,
                       extra={"replication": {"rate_limit_kib": str(RATE_KIB)}})
    p01 = h.add_site("P01", parent=cas, listen=False,
                     extra={"replication": {"apply_while_receiving": "true"}})
    p02 = h.add_site("P02", parent=cas, listen=False)
    cas.start()
    cas.cli_ok("child", "add", "P01")
    cas.cli_ok("child", "add", "P02")
    cas.cli_ok("sync", "--yes")
    wait_for(lambda: cas.catalog_state()[0] == 1, TIMEOUT, "CAS at version 1")

    seen = pull_once(h, cas, p01)
    total = wait_for(lambda: served_bytes(cas, "P01"), 20, "CAS to finish serving P01")
    check(seen is not None and 0 < seen < total,
          "P01: no apply was running while its stream arrived (seen at %r of %d bytes)"
          % (seen, total))
    h.wait_converged(cas, [p01], TIMEOUT, "P01 at version 1")
    log("P01 applied while receiving: COPY running with %d of %d bytes stored" % (seen, total))

    seen = pull_once(h, cas, p02)
    total = wait_for(lambda: served_bytes(cas, "P02"), 20, "CAS to finish serving P02")
    check(seen is None or seen >= total,
          "P02 (apply_while_receiving off) applied with %r of %d bytes stored" % (seen, total))
    h.wait_converged(cas, [p02], TIMEOUT, "P02 at version 1")
    log("P02 applied after the whole stream (%d bytes) was stored" % total)


if __name__ == "__main__":
    harness.main(test, "apply_receiving")
