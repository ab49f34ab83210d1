#!/usr/bin/env python3
"""A stream produced for a child that left still takes a pull slot (issue 15 #5).

    CAS ([replication] max_concurrent_pulls = 1)
     ├── P02 (raw TLS client: asks for the delta 1->2, then hangs up)
     └── P01 (a real child, holds nothing)

CAS's catalog_state is locked for a few seconds, so the production P02
asked for waits in the database. P02 closes at once; the production goes
on without a child. P01 then asks for its first pull: it must be queued
("queued: 1 pulls already served"), not start a second scan past the cap.
When the lock goes, the orphaned production ends, P01's pull starts from
the queue and P01 converges.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (FRAME_HELLO, check, frame, hello_frame, log,  # noqa: E402
                     pb_field_varint, read_frames, send_quietly, tls_connect, wait_for)

ENTRIES = 100
SEED = 29
TIMEOUT = 120
LOCK_SECONDS = 5


def test(h):
    cas, catalog = h.add_top(ENTRIES, SEED,
                             extra={"replication": {"max_concurrent_pulls": "1"}})
    p01 = h.add_site("P01", parent=cas, listen=False)
    h.add_site("P02", parent=cas, listen=False)
    cas.start()
    cas.cli_ok("child", "add", "P01")
    cas.cli_ok("child", "add", "P02")
    for rnd in (1, 2):
        h.gen_catalog(catalog, ENTRIES, rnd, SEED)
        cas.cli_ok("sync", "--yes")
        wait_for(lambda: cas.catalog_state()[0] == rnd or None, TIMEOUT, "CAS version %d" % rnd)

    locker = harness.lock_catalog_state(h, cas, LOCK_SECONDS)
    try:
        mark = cas.log_mark()
        certs = h.certs
        s, err = tls_connect(cas.port, certs.ca, certs.cert("P02"), certs.key("P02"))
        check(s is not None, "P02 TLS connect: %s" % err)
        try:
            send_quietly(s, hello_frame("P02", 1))
            check(read_frames(s, 15, stop_after=FRAME_HELLO).has(FRAME_HELLO), "no Hello from CAS")
            send_quietly(s, frame(harness.FRAME_PULL_REQUEST, pb_field_varint(1, 1)))
            wait_for(lambda: "child P02: pull from version 1" in cas.log_since(mark), 20,
                     "P02's pull at CAS")
        finally:
            s.close()
        wait_for(lambda: "Child site P02 disconnected" in cas.log_since(mark), 20,
                 "CAS to see P02 leave")
        p01.start()
        want = "child P01: pull from version 0 queued: 1 pulls already served"

        def first_p01_pull():
            lines = [ln for ln in cas.log_since(mark).splitlines()
                     if "child P01: pull from version 0" in ln]
            return lines[0] if lines else None
        first = wait_for(first_p01_pull, 30, "P01's PullRequest at CAS")
        check(want in first, "P01's pull started past the cap: %r" % first)
        log("with P02's orphaned production waiting on the lock, P01 was queued")
    finally:
        _, err = locker.communicate(timeout=LOCK_SECONDS + 30)
    check(locker.returncode == 0, "the lock session failed: %s" % err)
    h.wait_converged(cas, [p01], TIMEOUT, "P01 after the orphaned production ended")
    log("the orphaned production ended, P01's queued pull ran and P01 converged")


if __name__ == "__main__":
    harness.main(test, "spool_admission")
