#!/usr/bin/env python3
"""Disconnected sites: export and import bundles (DESIGN §6).

    CAS  ~~ bundle file ~~>  D01 ([parent] mode = disconnected)
                              |
                             G01 (connected to D01 over TLS)

CAS exports a full bundle of round 1; D01 imports it and must hold CAS's
version, digest and rows; G01 pulls them from D01. CAS makes round 2 and
exports the changes after version 1; before D01 imports them, a series of
bad bundles must each be refused with a clear message and exit status 2,
leaving D01's catalog untouched: one corrupted byte, a truncated file, a
bundle that starts at a version D01 does not hold, a replayed bundle and a
bundle from another hierarchy (a second top site under its own CA). Then
the good delta is imported and G01 follows again. Round 3 asks for changes
CAS's change log no longer holds: the export falls back to a full snapshot,
says so (in the text output too), and that snapshot imports over D01's
populated catalog.

Every site checks signed manifests ([trust] public_key, CAS signs): a
bundle exported at the top carries the signed manifest. Each refusal
turns D01 failed with a sitesync error code (500+) and counts in
consecutive_failures; a replayed bundle is "nothing to do" (exit 0, the
status row unchanged), not a failure.
"""

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Certs, Site, check, keypair, log, wait_for  # noqa: E402

ENTRIES = 3000
SEED = 7
TIMEOUT = 300           # generous for ASan builds


class OtherHierarchySite(Site):
    """A site whose TLS material comes from a CA of its own."""

    def __init__(self, h, code, certs, **kw):
        self.other_certs = certs
        certs.site(code)
        super().__init__(h, code, **kw)

    def config_sections(self):
        sec = super().config_sections()
        c = self.other_certs
        sec["tls"] = {"ca": c.ca, "cert": c.cert(self.code), "key": c.key(self.code)}
        return sec


def export(site, path, *extra):
    """Export at `site` into `path`; return the reply's data."""
    out = site.cli_ok("export", "--out", path, "--json", *extra, timeout=TIMEOUT)
    data = json.loads(out)
    check(os.path.exists(path), "%s: export reported success but %s is missing"
          % (site.code, path))
    check(data.get("bytes") == os.path.getsize(path),
          "%s: export says %r bytes, the file has %d"
          % (site.code, data.get("bytes"), os.path.getsize(path)))
    leftovers = [n for n in os.listdir(os.path.dirname(path)) if ".tmp-" in n]
    check(not leftovers, "export left temporary files behind: %r" % leftovers)
    return data


def import_ok(site, path):
    out = site.cli_ok("import", path, "--json", timeout=TIMEOUT)
    return json.loads(out)



def replayed(site, path, held):
    """Import a bundle `site` already applied: nothing to do, nothing failed."""
    before_row = own_row(site)
    before = (site.catalog_state(), site.fingerprint())
    rc, out, err = site.cli("import", path, timeout=TIMEOUT)
    want = "Nothing to do: bundle was already applied: this site holds version %d" % held
    check(rc == 0 and want in out, "%s: replaying %s: exit %d, %r %r (want %r)"
          % (site.code, path, rc, out, err, want))
    rc, out, err = site.cli("import", path, "--json", timeout=TIMEOUT)
    data = json.loads(out) if rc == 0 else {}
    check(rc == 0 and data.get("nothing_to_do") is True and data.get("held_version") == held,
          "%s: replay --json: exit %d %r %r" % (site.code, rc, out, err))
    check((site.catalog_state(), site.fingerprint()) == before,
          "%s: a replayed bundle changed the catalog" % site.code)
    row = own_row(site)
    for k in ("state", "last_error", "last_error_code", "consecutive_failures",
              "last_sync_end"):
        check(row.get(k) == before_row.get(k), "%s: replay changed %s: %r -> %r"
              % (site.code, k, before_row.get(k), row.get(k)))
    log("replayed bundle at version %d: nothing to do" % held)


def refused(site, path, words, what, code=None):
    """Import `path` at `site`: exit 2, `words` in the message, nothing changed;
    the row turns failed with error `code` and one more consecutive failure."""
    before = (site.catalog_state(), site.fingerprint())
    fails = own_row(site).get("consecutive_failures", 0)
    rc, out, err = site.cli("import", path, timeout=TIMEOUT)
    text = (out + err).strip()
    check(rc == 2, "%s: importing %s exited %d, want 2: %s" % (site.code, what, rc, text))
    check(words in text, "%s: importing %s said %r, want it to mention %r"
          % (site.code, what, text, words))
    after = (site.catalog_state(), site.fingerprint())
    check(after == before, "%s: refused %s still changed the catalog: %r -> %r"
          % (site.code, what, before, after))
    row = own_row(site)
    check(row.get("state") == "failed" and words in (row.get("last_error") or ""),
          "%s: status after refusing %s is %r / %r" % (site.code, what, row.get("state"),
                                                      row.get("last_error")))
    check(row.get("consecutive_failures") == fails + 1,
          "%s: consecutive_failures %r after refusing %s (was %r)"
          % (site.code, row.get("consecutive_failures"), what, fails))
    if code is not None:
        check(row.get("last_error_code") == code, "%s: last_error_code %r after refusing %s,"
              " want %d" % (site.code, row.get("last_error_code"), what, code))
    log("refused %s: %s" % (what, text))


def own_row(site):
    doc = site.status_json()
    for r in doc.get("sites", []):
        if r.get("site") == site.code:
            return r
    raise harness.TestFailure("%s status lists no row for itself" % site.code)


def last_frame_offset(data):
    """Offset of the last frame of a framed file (4-byte big-endian lengths)."""
    off, last = 0, None
    while off < len(data):
        last = off
        off += 4 + int.from_bytes(data[off:off + 4], "big")
    check(off == len(data) and last, "bundle frames do not add up to the file size")
    return last


def sync_round(h, cas, rnd):
    before = cas.catalog_state()
    h.gen_catalog(h.catalog, ENTRIES, rnd, SEED)
    cas.cli_ok("sync", "--yes")
    st = wait_for(lambda: cas.catalog_state()[0] > before[0] and cas.catalog_state(),
                  TIMEOUT, "CAS to make catalog version %d" % rnd)
    check(st[0] == rnd, "CAS version after round %d is %d" % (rnd, st[0]))
    return st


def same_catalog(a, b, what):
    check(a.catalog_state() == b.catalog_state(), "%s: %s holds %r, %s holds %r"
          % (what, a.code, a.catalog_state(), b.code, b.catalog_state()))
    check(a.fingerprint() == b.fingerprint(), "%s: %s rows %r differ from %s rows %r"
          % (what, a.code, a.fingerprint(), b.code, b.fingerprint()))


def other_hierarchy_bundle(h, path):
    """A small top site under its own CA exports one version into `path`."""
    certs = Certs(h, dirname="certs-other", name="another sitesync CA")
    cat = h.path("upstream-other", "catalog.xml")
    os.makedirs(os.path.dirname(cat))
    h.gen_catalog(cat, 200, 1, SEED + 1)
    oth = OtherHierarchySite(h, "OTH", certs, upstream="file://" + cat)
    h.sites[oth.code] = oth     # stopped and checked at teardown like the rest
    oth.start()
    oth.cli_ok("sync", "--yes")
    wait_for(lambda: oth.catalog_state()[0] >= 1, TIMEOUT, "OTH to make version 1")
    data = export(oth, path)
    oth.stop()
    return data


def test(h):
    h.catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(h.catalog))
    h.gen_catalog(h.catalog, ENTRIES, 1, SEED)
    media = h.path("media")         # the "USB stick"
    os.makedirs(media)

    # A one-version change log at CAS, so a late --since falls back to a
    # snapshot in round 3. CAS signs manifests, every other site checks them.
    key, pub = keypair(h, "manifest")
    cas = h.add_site("CAS", upstream="file://" + h.catalog,
                     extra={"replication": {"keep_versions": "1"},
                            "trust": {"signing_key": key, "public_key": pub}})
    d01 = h.add_site("D01", extra={"parent": {"mode": "disconnected"},
                                   "trust": {"public_key": pub}})
    g01 = h.add_site("G01", parent=d01, listen=False, extra={"trust": {"public_key": pub}})
    cas.start()
    d01.start()
    d01.cli_ok("child", "add", "G01")
    g01.start()

    row = own_row(d01)
    check(row.get("link") == "disconnected", "D01 link is %r" % row.get("link"))
    check(row.get("sync_source") == "import", "D01 sync source is %r"
          % row.get("sync_source"))

    # Round 1: a full bundle carries the whole catalog across.
    st1 = sync_round(h, cas, 1)
    b1 = os.path.join(media, "full-1.bundle")
    e1 = export(cas, b1)
    check(e1.get("full") is True and e1.get("from_version") == 0
          and e1.get("to_version") == st1[0] and e1.get("upserts") == st1[2],
          "full export reply %r for CAS state %r" % (e1, st1))
    check(d01.catalog_state()[0] == 0, "D01 holds %r before any import"
          % (d01.catalog_state(),))
    i1 = import_ok(d01, b1)
    check(i1.get("to_version") == st1[0] and i1.get("upserts") == st1[2],
          "import reply %r for CAS state %r" % (i1, st1))
    same_catalog(d01, cas, "after importing the full bundle")
    row = own_row(d01)
    check(row.get("state") == "succeeded" and row.get("catalog_version") == st1[0],
          "D01 status after import: %r" % row)
    h.wait_converged(cas, [d01, g01], TIMEOUT, "G01 to pull version 1 from D01")
    log("round 1: D01 and G01 hold version %d (%d entries)" % (st1[0], st1[2]))

    # verify at the disconnected site says what it is, not "Top site".
    text = d01.cli_ok("verify")
    check("Disconnected site: no link to a parent" in text and "Top site" not in text
          and st1[1] in text, "verify at D01 said %r" % text)
    v = json.loads(d01.cli_ok("verify", "--json"))
    check(v.get("mode") == "disconnected" and v.get("equal") is True and v.get("parent") is None,
          "verify --json at D01: %r" % v)
    check("Top site" in cas.cli_ok("verify"), "verify at CAS")
    # sync at a disconnected site: refused (no parent link), nothing starts.
    before = own_row(d01)
    rc, out, err = d01.cli("sync", "--yes")
    check(rc == 2 and "D01 is a disconnected site: it takes its catalog from bundles" in err,
          "sync at D01: exit %d %r %r" % (rc, out, err))
    after = own_row(d01)
    check(after["state"] == before["state"] and after["last_sync_start"] == before["last_sync_start"],
          "sync at D01 changed its row: %r -> %r" % (before, after))

    # The top site makes its catalog from upstream, never from a bundle.
    rc, out, err = cas.cli("import", b1)
    check(rc == 2 and "top site" in out + err, "import at CAS: %d %s%s" % (rc, out, err))

    # Any site can export: D01's own full bundle matches what it holds.
    bd = os.path.join(media, "d01.bundle")
    ed = export(d01, bd)
    check(ed.get("to_version") == st1[0] and ed.get("digest") == st1[1],
          "D01 export %r, D01 holds %r" % (ed, d01.catalog_state()))

    # Round 2, exported as the changes after version 1.
    fp1 = cas.fingerprint()
    st2 = sync_round(h, cas, 2)
    check(cas.fingerprint() != fp1, "round 2 changed no rows")
    b12 = os.path.join(media, "delta-1-2.bundle")
    e12 = export(cas, b12, "--since", "1")
    check(e12.get("full") is False and e12.get("from_version") == 1
          and e12.get("to_version") == 2, "delta export reply %r" % e12)
    check(e12.get("upserts", 0) + e12.get("deletes", 0) < st2[2],
          "a delta carries %r of %d entries" % (e12, st2[2]))
    b22 = os.path.join(media, "delta-2-2.bundle")
    e22 = export(cas, b22, "--since", "2")
    check(e22.get("from_version") == 2, "--since 2 export reply %r" % e22)

    # Refusals while D01 holds version 1.
    data = open(b12, "rb").read()
    bad = os.path.join(media, "corrupted.bundle")
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x5A
    with open(bad, "wb") as f:
        f.write(flipped)
    refused(d01, bad, "checksum mismatch: the file is corrupted", "a corrupted bundle",
            code=514)
    # A missing file: a sitesync code, not errno 2.
    refused(d01, os.path.join(media, "missing.bundle"), "cannot open", "a missing file",
            code=521)

    cut = os.path.join(media, "truncated.bundle")
    with open(cut, "wb") as f:
        f.write(data[:len(data) * 2 // 3])
    refused(d01, cut, "truncated bundle", "a truncated bundle")
    # Cut exactly where the last frame (the checksum) starts: every frame
    # left is whole, only the end is missing.
    with open(cut, "wb") as f:
        f.write(data[:last_frame_offset(data)])
    refused(d01, cut, "truncated bundle", "a bundle without its checksum frame")

    refused(d01, b22, "bundle starts at version 2 but this site holds 1",
            "a bundle starting after the held version", code=513)

    bo = os.path.join(media, "other.bundle")
    other_hierarchy_bundle(h, bo)
    refused(d01, bo, "bundle belongs to another hierarchy", "another hierarchy's bundle",
            code=515)
    # The history lists each refused import as a failed sync.
    def failed_imports():
        hist = json.loads(d01.cli_ok("history", "--json"))
        got = [s for s in hist.get("syncs", []) if s.get("kind") == "import"
               and s.get("result") == "failed"]
        return got if len(got) == 6 and got[0].get("error_code") == 515 else None
    wait_for(failed_imports, 20, "D01 history to list the 6 refused imports")

    # The good delta still applies after all that.
    i12 = import_ok(d01, b12)
    check(i12.get("from_version") == 1 and i12.get("to_version") == 2,
          "delta import reply %r" % i12)
    same_catalog(d01, cas, "after importing the delta")
    h.wait_converged(cas, [d01, g01], TIMEOUT, "G01 to pull version 2 from D01")
    row = own_row(d01)
    check(row.get("state") == "succeeded" and not row.get("last_error"),
          "D01 status after the delta: %r" % row)
    log("round 2: D01 and G01 hold version 2")

    replayed(d01, b12, 2)

    # Round 3: CAS's change log no longer reaches version 1, so asking for
    # the changes after 1 yields a full snapshot, and says so. D01 (at 2)
    # takes it: a snapshot replaces a populated catalog too.
    st3 = sync_round(h, cas, 3)
    b13 = os.path.join(media, "since-1-at-3.bundle")
    e13 = export(cas, b13, "--since", "1")
    check(e13.get("full") is True and e13.get("snapshot_fallback") is True
          and e13.get("from_version") == 0 and e13.get("to_version") == st3[0]
          and "snapshot" in e13.get("note", ""),
          "export --since 1 at version 3 with one version of change log: %r" % e13)
    # The text output says it too, not only --json.
    text = cas.cli_ok("export", "--out", os.path.join(media, "since-1-text.bundle"),
                      "--since", "1", timeout=TIMEOUT)
    check("Full snapshot instead of the changes asked for: " + e13["note"] in text,
          "export text output hides the fallback: %r" % text)
    i13 = import_ok(d01, b13)
    check(i13.get("full") is True and i13.get("held_version") == 2
          and i13.get("to_version") == st3[0], "snapshot import reply %r" % i13)
    same_catalog(d01, cas, "after importing the fallback snapshot")
    h.wait_converged(cas, [d01, g01], TIMEOUT, "G01 to pull version 3 from D01")
    log("round 3: snapshot fallback imported, D01 and G01 hold version 3")
    # A full bundle of the version held is a replay too (apply.c refuses it
    # unless a repair asked for it), not a second apply.
    replayed(d01, b13, st3[0])

    # An older full bundle is refused too: a full bundle may replace a
    # populated catalog, but never with an older version.
    refused(d01, b1, "bundle is older than this site's catalog: it brings version 1, "
            "this site holds %d" % st3[0], "an older full bundle")

    # The bundle on the media is the only copy D01 ever read: removing it
    # must not matter, and nothing was left in D01's state dir.
    shutil.rmtree(media)
    left = [n for n in os.listdir(d01.state_dir) if n.startswith("export-")]
    check(not left, "D01 state dir keeps scratch files: %r" % left)


if __name__ == "__main__":
    harness.main(test, "bundles")
