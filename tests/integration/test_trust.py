#!/usr/bin/env python3
"""Signed manifests: a compromised relay cannot alter what it passes on.

CAS signs every catalog version's manifest with an Ed25519 key; every other
site holds the hierarchy's public key. P01 is compromised: a test hook makes
it alter one entry of every stream it serves and fix up the digest, so the
digest check alone would accept the forgery. S01, below P01, must refuse it,
keep its old version, and the refusal must be visible at the top. The
honest branch (P02 -> S02) syncs as usual. Then CAS announces a new key in a
manifest signed by the old one, switches to it, and the sites follow.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, keypair, log, wait_for  # noqa: E402

ENTRIES = 1200
SEED = 5
TIMEOUT = 120



def row(site, code):
    for r in site.status_json()["sites"]:
        if r["site"] == code:
            return r
    return None


def test(h):
    old_key, old_pub = keypair(h, "old")
    new_key, new_pub = keypair(h, "new")
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    h.gen_catalog(catalog, ENTRIES, 1, SEED)

    trust = {"trust": {"public_key": old_pub}}
    cas = h.add_site("CAS", upstream="file://" + catalog,
                     extra={"trust": {"signing_key": old_key, "public_key": old_pub}})
    p01 = h.add_site("P01", parent=cas, extra=trust)
    p02 = h.add_site("P02", parent=cas, extra=trust)
    s01 = h.add_site("S01", parent=p01, listen=False, extra=trust)
    s02 = h.add_site("S02", parent=p02, listen=False, extra=trust)

    cas.start()
    cas.cli_ok("child", "add", "P01")
    cas.cli_ok("child", "add", "P02")
    p01.start(env={"SITESYNC_TEST_TAMPER": "batch"})     # only P01 is compromised
    p02.start()
    p01.cli_ok("child", "add", "S01")
    p02.cli_ok("child", "add", "S02")
    s01.start()
    s02.start()

    cas.cli_ok("sync", "--yes")
    h.wait_converged(cas, [p01, p02, s02], TIMEOUT, "version 1 on the honest path and at P01")
    log("version 1 verified at P01, P02 and S02")

    def s01_refused():
        check((s01.catalog_state() or (0,))[0] == 0, "S01 applied a forged catalog: %r"
              % (s01.catalog_state(),))
        r = row(cas, "S01")
        if r is None or r["state"] != "failed":
            return False
        return r
    r = wait_for(s01_refused, TIMEOUT, "S01's refusal of P01's forgery to show at CAS")
    check("signed manifest" in (r["last_error"] or ""),
          "S01's error at CAS does not name the manifest: %r" % r["last_error"])
    check(s01.catalog_state()[0] == 0, "S01 applied a forged catalog: %r" % (s01.catalog_state(),))
    log("S01 refused the tampered stream (%s), still at version 0; visible at CAS" % r["last_error"])

    # Rotation: CAS announces the new key (signed by the old one), then signs with it.
    cas.stop()
    cas.extra["trust"]["next_public_key"] = new_pub
    cas.write_config()
    cas.start()
    h.gen_catalog(catalog, ENTRIES, 2, SEED)
    cas.cli_ok("sync", "--yes")
    wait_for(lambda: cas.catalog_state()[0] == 2, TIMEOUT, "CAS to commit version 2")
    h.wait_converged(cas, [p02, s02], TIMEOUT, "version 2 (announcing the new key)")
    announced = s02.sql("SELECT count(*) FROM settings WHERE key LIKE 'trusted_key_%'")
    check(announced.strip() == "1", "S02 did not record the announced key: %r; its manifests: %r"
          % (announced, s02.sql("SELECT version, length(manifest), length(signature) "
                                "FROM catalog_versions ORDER BY version")))

    cas.stop()
    cas.extra["trust"] = {"signing_key": new_key, "public_key": new_pub}
    cas.write_config()
    cas.start()
    h.gen_catalog(catalog, ENTRIES, 3, SEED)
    cas.cli_ok("sync", "--yes")
    wait_for(lambda: cas.catalog_state()[0] == 3, TIMEOUT, "CAS to commit version 3")
    got = h.wait_converged(cas, [p02, s02], TIMEOUT, "version 3, signed with the new key")
    log("version %d signed with the rotated key reached P02 and S02" % got[0])
    check(s01.catalog_state()[0] == 0, "S01 accepted a forged catalog later on")


if __name__ == "__main__":
    harness.main(test, "trust")
