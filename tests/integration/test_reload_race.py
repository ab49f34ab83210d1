#!/usr/bin/env python3
"""SIGHUP at the top while a worker produces a pull stream (issue 15 #1).

    CAS (signs manifests) ── P01 (verifies them)

CAS's catalog_state is locked by a psql session for a few seconds, so the
spool worker serving P01's first PullRequest blocks inside its snapshot.
While it waits, CAS is sent SIGHUP twice (the reload frees the old
configuration; the log threshold changes). When the lock goes, the worker
signs the manifest of the stream. Before the fix the worker read the site
code from the freed configuration: ASan reports heap-use-after-free in
manifest_sign (run this test in the build-san tree), and a release build
signed heap garbage as the manifest's site.

Checks: P01 converges on CAS's version and digest; the manifest P01 stored
(as CAS signed it) names site CAS; no sanitizer report in any log (the
harness checks every daemon log at teardown).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, keypair, log, pb_decode, wait_for  # noqa: E402

ENTRIES = 200
SEED = 21
TIMEOUT = 120
LOCK_SECONDS = 5


def test(h):
    key, pub = keypair(h)
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    h.gen_catalog(catalog, ENTRIES, 1, SEED)
    cas = h.add_site("CAS", upstream="file://" + catalog,
                     extra={"trust": {"signing_key": key, "public_key": pub}})
    p01 = h.add_site("P01", parent=cas, listen=False,
                     extra={"trust": {"public_key": pub}})
    cas.start()
    cas.cli_ok("child", "add", "P01")
    cas.cli_ok("sync", "--yes")
    v = wait_for(lambda: cas.catalog_state()[0] or None, TIMEOUT, "CAS version 1")

    # The slow database: the spool worker's first read waits on this lock.
    locker = harness.lock_catalog_state(h, cas, LOCK_SECONDS)
    try:
        t0 = time.monotonic()
        mark = cas.log_mark()
        p01.start()
        wait_for(lambda: "child P01: pull from version 0" in cas.log_since(mark),
                 TIMEOUT, "P01's PullRequest at CAS")
        # The worker waits on the lock now; reload under it.
        cas.proc.send_signal(1)
        wait_for(lambda: cas.log_since(mark).count("configuration reloaded") >= 1, 10,
                 "the first reload")
        cas.proc.send_signal(1)
        wait_for(lambda: cas.log_since(mark).count("configuration reloaded") >= 2, 10,
                 "the second reload")
        check(time.monotonic() - t0 < LOCK_SECONDS,
              "the reloads came after the lock was released: no race tried")
        log("two reloads while the spool worker waited on the lock")
    finally:
        _, err = locker.communicate(timeout=LOCK_SECONDS + 30)
    check(locker.returncode == 0, "the lock session failed: %s" % err)

    h.wait_converged(cas, [p01], TIMEOUT, "P01 at CAS's version after the reload")
    check(p01.catalog_state() == cas.catalog_state(),
          "P01 %r, CAS %r" % (p01.catalog_state(), cas.catalog_state()))
    man = p01.sql("SELECT encode(manifest, 'hex') FROM catalog_versions WHERE version = %d" % v)
    check(man, "P01 stored no manifest for version %d" % v)
    site = [val for field, _, val in pb_decode(bytes.fromhex(man)) if field == 1]
    site = site[0] if site else b""
    check(site == b"CAS", "the signed manifest names site %r, not CAS" % (site,))
    log("P01 holds version %d; its manifest, verified against CAS's key, names site CAS" % v)
    check(cas.running() and p01.running(), "a daemon died")


if __name__ == "__main__":
    harness.main(test, "reload_race")
