#!/usr/bin/env python3
"""A relay that swaps entries under the old digest is refused (issue #15, 10).

The protocol-2 catalog digest is a sum mod 2^256 of entry hashes; the
generalised birthday attack finds another entry set with the same sum and
count. P01 plays a relay that won that attack: a test hook
(SITESYNC_TEST_TAMPER=set) makes it alter one entry of every stream it
serves and fix up only the protocol-2 sum, leaving the set digest as the
top made it (a forger cannot match that). No trust keys, so the digest is
the only check:

1. a bare protocol-2 child X01 pulls from P01 and checks exactly what a
   9629df0 child checked: the sum of the received entries' hashes equals
   PullDone's digest, and the count matches. It does: the old scheme would
   commit the forgery. The set digest of what it received (computed here
   from the definition) differs from PullDone's set_digest.
2. S01, a protocol-3 child of P01, refuses the stream with "catalog set
   digest mismatch", stays at version 0, and the refusal shows at CAS.
3. No falling back to the sum: a stream whose PullDone carries no set
   digest (as a protocol-2 site makes them) is refused. Made here as an
   export bundle of CAS with set_digest taken out and its checksum redone;
   the disconnected D01 refuses to import it and keeps its empty catalog.

The forgery itself, with a real collision of the sum, is in the digest unit
test at a reduced width (Wagner's 4-list algorithm, 2^48).
"""

import hashlib
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (FRAME_PULL_DONE, check, entry_hash, frame, log, pb_decode,  # noqa: E402
                     pb_field_bytes, pb_field_varint, raw_pull, set_digest, sum_digest,
                     wait_for)

ENTRIES = 300
TIMEOUT = 120


FRAME_BUNDLE_END = 12


def strip_set_digest(src, dst):
    """Copy a bundle without PullDone's set_digest (field 6), as a
    protocol-2 site would have written it; redo the BundleEnd checksum."""
    data = open(src, "rb").read()
    out, off = b"", 0
    while off < len(data):
        ln = struct.unpack(">I", data[off:off + 4])[0]
        (field, _, body), = pb_decode(data[off + 4:off + 4 + ln])
        off += 4 + ln
        if field == FRAME_PULL_DONE:
            fields = pb_decode(body)
            check(any(f == 6 for f, _, _ in fields), "CAS's bundle has no set digest to take out")
            body = b"".join(pb_field_varint(f, v) if wt == 0 else pb_field_bytes(f, v)
                            for f, wt, v in fields if f != 6)
        if field == FRAME_BUNDLE_END:
            body = pb_field_bytes(1, hashlib.sha256(out).digest())
        out += frame(field, body)
    with open(dst, "wb") as f:
        f.write(out)


def test(h):
    cas, _ = h.add_top(ENTRIES, 3)
    p01 = h.add_site("P01", parent=cas)
    s01 = h.add_site("S01", parent=p01, listen=False)
    cas.start()
    cas.cli_ok("child", "add", "P01")
    p01.start(env={"SITESYNC_TEST_TAMPER": "set"})
    p01.cli_ok("child", "add", "S01")
    h.certs.site("X01")
    p01.cli_ok("child", "add", "X01")

    cas.cli_ok("sync", "--yes")
    top = h.wait_converged(cas, [p01], TIMEOUT, "version 1 at P01")
    log("P01 holds version %d (%d entries)" % (top[0], top[2]))

    entries, done, _ = raw_pull(h, p01.port, "X01", 2)
    hashes = [entry_hash(r, c) for _, r, c in entries]
    check(len(entries) == done.get(3) == ENTRIES,
          "P01 sent %d entries, PullDone says %r" % (len(entries), done.get(3)))
    check(sum_digest(hashes) == done[2].hex(),
          "the forged stream should keep the protocol-2 sum consistent: %s vs %s"
          % (sum_digest(hashes), done[2].hex()))
    check(done[2].hex() != top[1],
          "the hook did not alter any entry (sum still %s)" % top[1])
    log("protocol-2 check on P01's stream: sum %s… and count %d match: 9629df0 would commit it"
        % (done[2].hex()[:16], len(entries)))
    got = set_digest(hashes)
    check(6 in done and got != done[6].hex(),
          "the set digest should tell the forgery apart: %s vs %r" % (got, done.get(6)))
    log("set digest of what arrived %s… differs from PullDone's %s…" % (got[:16], done[6].hex()[:16]))

    s01.start()

    def s01_refused():
        for r in cas.status_json()["sites"]:
            if r["site"] == "S01" and r["state"] == "failed":
                return r
        return False
    r = wait_for(s01_refused, TIMEOUT, "S01's refusal of P01's forgery to show at CAS")
    check("catalog set digest mismatch" in (r["last_error"] or ""),
          "S01's error does not name the set digest: %r" % r["last_error"])
    check(s01.catalog_state()[0] == 0, "S01 applied a forged catalog: %r" % (s01.catalog_state(),))
    check(s01.sql("SELECT count(*) FROM updates").strip() == "0", "S01 kept forged rows")
    log("S01 refused the forged set (%s), still at version 0" % r["last_error"])

    d01 = h.add_site("D01", extra={"parent": {"mode": "disconnected"}})
    d01.start()
    full = h.path("bundles", "full.ssb")
    os.makedirs(os.path.dirname(full))
    cas.cli_ok("export", "--out", full, "--json", timeout=TIMEOUT)
    old = h.path("bundles", "no-set-digest.ssb")
    strip_set_digest(full, old)
    rc, out, err = d01.cli("import", old, timeout=TIMEOUT)
    text = (out + err).strip()
    check(rc == 2 and "carries no set digest" in text,
          "D01: importing a bundle without a set digest exited %d: %s" % (rc, text))
    check(d01.catalog_state()[0] == 0 and d01.sql("SELECT count(*) FROM updates").strip() == "0",
          "D01 changed its catalog: %r" % (d01.catalog_state(),))
    log("D01 refused a stream without a set digest: %s" % text)


if __name__ == "__main__":
    harness.main(test, "forged_set")
