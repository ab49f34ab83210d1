#!/usr/bin/env python3
"""Protocol version negotiation (DESIGN §8, rolling upgrades).

A parent serves children of its own protocol version and of the one before
(proto/version.h): it answers each in the child's version. Versions outside
that range are refused with an Error naming the versions it serves, and the
refusal affects no other child.

Protocol 3 (LtHash set digest) against protocol-2 children: a bare child
of each version pulls a full snapshot. Both get the same stream; its
PullDone carries the protocol-2 sum, which equals the sum of the received
entries' hashes (what a protocol-2 child checks), and the set digest, which
equals the set digest computed here from its definition (what a protocol-3
child checks).
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (FRAME_HELLO, PeerResult, check, decode_hello, entry_hash,  # noqa: E402
                     hello_frame, log, raw_pull, read_frames, send_quietly, set_digest,
                     sum_digest, tls_connect, wait_for)

PEER_TIMEOUT = 10
ENTRIES = 150


def proto_versions(src):
    text = open(os.path.join(src, "proto", "version.h")).read()
    cur = int(re.search(r"#define SS_PROTO_VERSION (\d+)", text).group(1))
    low = int(re.search(r"#define SS_PROTO_MIN_VERSION (\d+)", text).group(1))
    return low, cur


def hello_exchange(h, port, code, version):
    c = h.certs
    res = PeerResult()
    s, err = tls_connect(port, c.ca, c.cert(code), c.key(code))
    check(s is not None, "TLS to the parent failed: %s" % err)
    try:
        e = send_quietly(s, hello_frame(code, 0, protocol_version=version))
        check(not e, "sending Hello failed: %s" % e)
        read_frames(s, PEER_TIMEOUT, stop_after=FRAME_HELLO, result=res)
    finally:
        s.close()
    return res


def test(h):
    low, cur = proto_versions(h.src)
    check(low == cur - 1, "a parent must serve one protocol version older (min %d, current %d)"
          % (low, cur))
    catalog = h.path("upstream", "catalog.xml")
    h.gen_catalog(catalog, ENTRIES, 1, 2)
    cas = h.add_site("CAS", upstream="file://" + catalog)
    cas.start()
    h.certs.site("P09")
    cas.cli_ok("child", "add", "P09")

    for v in (low, cur):
        res = hello_exchange(h, cas.port, "P09", v)
        hellos = [decode_hello(b) for f, b in res.frames if f == FRAME_HELLO]
        check(hellos, "a version-%d child got no Hello: %r" % (v, res))
        check(hellos[0].get("protocol_version") == v,
              "a version-%d child was answered in version %r" % (v, hellos[0].get("protocol_version")))
        log("version %d child: answered in version %d" % (v, v))

    for v in (low - 1, cur + 1):
        res = hello_exchange(h, cas.port, "P09", v)
        errs = res.errors()
        check(not res.has(FRAME_HELLO) and errs and errs[0][0] == -504,
              "a version-%d child should get Error -504, got %r" % (v, res))
        check(str(low) in errs[0][1] and str(cur) in errs[0][1],
              "the refusal should name the versions served: %r" % (errs[0][1],))
        log("version %d child refused: %s" % (v, errs[0][1]))

    cas.cli_ok("sync", "--yes")
    version, digest, entries = wait_for(lambda: cas.catalog_state()[0] == 1 and cas.catalog_state(),
                                        60, "CAS to commit version 1")
    stored_set = cas.sql("SELECT encode(set_digest, 'hex') FROM catalog_versions "
                         "WHERE version = 1").strip()
    for v in (low, cur):
        got, done, res = raw_pull(h, cas.port, "P09", v)
        hashes = [entry_hash(r, c) for _, r, c in got]
        check(len(got) == done.get(3) == entries == ENTRIES,
              "version-%d child: %d entries, PullDone says %r, CAS holds %d"
              % (v, len(got), done.get(3), entries))
        check(done.get(2, b"").hex() == digest == sum_digest(hashes),
              "version-%d child: PullDone sum %s, CAS %s, entries give %s"
              % (v, done.get(2, b"").hex(), digest, sum_digest(hashes)))
        check(done.get(6, b"").hex() == stored_set == set_digest(hashes),
              "version-%d child: PullDone set digest %s, CAS %s, entries give %s"
              % (v, done.get(6, b"").hex(), stored_set, set_digest(hashes)))
        log("version %d child: full pull of %d entries; sum %s… and set digest %s… both check"
            % (v, len(got), digest[:16], stored_set[:16]))


if __name__ == "__main__":
    harness.main(test, "protocol")
