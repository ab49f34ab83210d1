#!/usr/bin/env python3
"""Bad peers are refused, and one bad peer affects no other.

CAS with an approved, synced child P01. Then, against CAS's listener:
  1. a client certificate from another CA            -> refused, logged
  2. a valid certificate for an unapproved site X99   -> refused, logged with X99
  3. plain TCP bytes, no TLS                          -> closed
  4. approved P02 (cert + `child add P02`) sending
     a. garbage as its first frame                    -> Error frame / close
     b. Hello, then a garbage frame                   -> Error frame / close
     c. a frame header announcing 0x7fffffff bytes     -> Error frame / close
     d. Hello, then a message a child never sends     -> Error frame / close
Finally CAS is still up, P01 is still linked and picks up round 2 with
CAS's digest.
"""

import json
import os
import re
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (FRAME_ERROR, FRAME_HELLO, FRAME_PULL_DONE, Certs,  # noqa: E402
                     PeerResult, check, frame, hello_frame, log, pb_field_bytes,
                     pb_field_varint, read_frames, send_quietly, tls_connect,
                     wait_for)

ENTRIES = 500
SEED = 3
TIMEOUT = 180
PEER_TIMEOUT = 15       # how long a refused peer may be kept waiting
SS_EDENIED = -509
MSG_CHILD_REFUSED = 7104

# Something in the parent's log must say why it dropped the peer.
REASON_RE = re.compile(
    r"(?i)(refus|reject|den(y|ied)|unknown|not approved|unapproved|verif|"
    r"certificat|handshake|tls|ssl|alert|invalid|malformed|decod|frame|"
    r"too (large|big|long)|oversize|limit|exceed|unexpected|protocol|error)")


def tls_peer(port, ca, cert, key, sends, expect_hello_first=False):
    """Connect, optionally exchange Hellos, send `sends`, read to the end."""
    res = PeerResult()
    s, err = tls_connect(port, ca, cert, key)
    if s is None:
        res.closed, res.how = True, err
        return res
    try:
        if expect_hello_first:
            e = send_quietly(s, sends[0])
            read_frames(s, PEER_TIMEOUT, stop_after=FRAME_HELLO, result=res)
            check(not e and res.has(FRAME_HELLO),
                  "approved P02 got no Hello back: %r %s" % (res, e or ""))
            sends = sends[1:]
        for data in sends:
            e = send_quietly(s, data)
            if e:
                res.closed, res.how = True, e
                break
        if not res.closed:
            read_frames(s, PEER_TIMEOUT, result=res)
    finally:
        s.close()
    return res


def plain_peer(port, data):
    res = PeerResult()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        e = send_quietly(s, data)
        if e:
            res.closed, res.how = True, e
            return res
        read_frames(s, PEER_TIMEOUT, result=res)
    return res


def expect_refused(res, what):
    check(not res.has(FRAME_HELLO), "%s: CAS answered with a Hello: %r" % (what, res))
    check(res.closed, "%s: connection left open: %r" % (what, res))
    log("%s: refused (%s%s)" % (what, res.how,
                                 ", Error %r" % (res.errors(),) if res.errors() else ""))


def expect_error_or_close(res, what):
    check(res.closed or res.has(FRAME_ERROR),
          "%s: neither an Error frame nor a close: %r" % (what, res))
    kinds = [k for k in res.kinds() if k not in ("Hello", "SyncRequest", "Ping")]
    check(kinds in ([], ["Error"]), "%s: unexpected frames %r" % (what, res))
    log("%s: %s%s" % (what, res.how,
                      ", Error %r" % (res.errors(),) if res.errors() else ""))


def history_messages(site, msg_id):
    hist = json.loads(site.cli_ok("history", "--json", "--limit", "500"))
    return [m for m in hist.get("messages", []) if str(m.get("msg_id")) == str(msg_id)]


def expect_logged(site, mark, what, must_contain=None):
    def logged():
        text = site.log_since(mark)
        if must_contain is not None:
            return must_contain in text and REASON_RE.search(text)
        return REASON_RE.search(text)
    wait_for(logged, 15, "%s to log why it dropped %s" % (site.code, what))


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    h.gen_catalog(catalog, ENTRIES, 1, SEED)
    cas = h.add_site("CAS", upstream="file://" + catalog)
    p01 = h.add_site("P01", parent=cas, listen=False)
    cas.start()
    cas.cli_ok("child", "add", "P01")
    p01.start()
    cas.cli_ok("sync", "--yes")
    h.wait_converged(cas, [p01], TIMEOUT, "round 1 at P01")
    log("CAS and P01 synced at version 1")

    certs = h.certs
    port = cas.port
    foreign = Certs(h, "foreign-ca", name="foreign CA")
    foreign.site("P01")
    certs.site("X99")
    certs.site("P02")

    def alive():
        check(cas.running(), "CAS died; log:\n%s" % cas.log_tail(60))

    # 1. Another CA's certificate, even for an approved site code.
    mark = cas.log_mark()
    res = tls_peer(port, certs.ca, foreign.cert("P01"), foreign.key("P01"),
                   [hello_frame("P01", 1)])
    expect_refused(res, "foreign-CA certificate")
    expect_logged(cas, mark, "the foreign-CA client")
    alive()

    # 2. A good certificate for a site nobody approved: CAS asks its
    # database (another daemon of an HA pair may have approved it), finds
    # nothing, and refuses with exactly this error and message.
    mark = cas.log_mark()
    res = tls_peer(port, certs.ca, certs.cert("X99"), certs.key("X99"),
                   [hello_frame("X99", 0)])
    expect_refused(res, "unapproved X99")
    # The Error frame can be lost: CAS may close before it has read X99's
    # Hello, and the reset then discards what X99 had not read yet. When it
    # arrives it must be exactly this one; the log and 7104 always are.
    check(res.errors() in ([], [(SS_EDENIED, "site X99 is not an approved child of CAS")]),
          "unapproved X99 got errors %r" % (res.errors(),))
    expect_logged(cas, mark, "X99", must_contain="refusing site X99 from ")
    check("not an approved child of CAS" in cas.log_since(mark), "CAS log: %s"
          % cas.log_since(mark))
    refusals = wait_for(lambda: [m for m in history_messages(cas, MSG_CHILD_REFUSED)
                                 if "X99" in m["text"]], 15, "message 7104 for X99")
    check("not an approved child" in refusals[0]["text"], "7104: %r" % refusals[0])
    check(cas.sql("SELECT count(*) FROM children WHERE site = 'X99'") == "0",
          "X99 got into CAS's children table")
    alive()

    # 2b. A site approved only in the database (as the other daemon of an HA
    # pair would) whose Hello carries no hierarchy id (an older child) is
    # accepted, not refused as "another hierarchy".
    certs.site("X98")
    cas.sql("INSERT INTO children (site) VALUES ('X98')")
    s, err = tls_connect(port, certs.ca, certs.cert("X98"), certs.key("X98"))
    check(s is not None, "X98 TLS connect: %s" % err)
    try:
        e = send_quietly(s, hello_frame("X98", 0))
        res = read_frames(s, PEER_TIMEOUT, stop_after=FRAME_HELLO)
    finally:
        s.close()
    check(not e and res.has(FRAME_HELLO) and not res.errors(),
          "X98, approved in the database, Hello without hierarchy id: %r %r %s"
          % (res, res.errors(), e or ""))
    log("X98 (approved in the database only, no hierarchy id) got CAS's Hello")
    alive()

    # 3. Plain TCP, no TLS at all.
    res = plain_peer(port, b"\x00\x00\x00\x10GET / HTTP/1.0\r\n\r\n" + b"\x01" * 64)
    check(res.closed, "plain TCP connection left open: %r" % res)
    log("plain TCP: closed (%s)" % res.how)
    alive()

    # 4. An approved child that speaks garbage.
    cas.cli_ok("child", "add", "P02")
    p02 = (port, certs.ca, certs.cert("P02"), certs.key("P02"))
    garbage = b"\xff" * 9 + b"\x0f\x07garbage"      # bad varint, bad wire type
    bad_frame = struct.pack(">I", len(garbage)) + garbage

    # An approved child whose Hello names another approved site.
    mark = cas.log_mark()
    res = tls_peer(*p02, [hello_frame("P01", 1)])
    expect_refused(res, "P02 claiming to be P01")
    want = "Hello claims site 'P01' but the certificate says P02"
    check(res.errors() in ([], [(SS_EDENIED, want)]), "P02 as P01 got %r" % (res.errors(),))
    wait_for(lambda: want in cas.log_since(mark), 15, "CAS to log %r" % want)
    alive()

    mark = cas.log_mark()
    res = tls_peer(*p02, [bad_frame])
    expect_error_or_close(res, "P02 garbage first frame")
    expect_logged(cas, mark, "P02's garbage frame")
    alive()

    mark = cas.log_mark()
    res = tls_peer(*p02, [hello_frame("P02", 0), bad_frame], expect_hello_first=True)
    expect_error_or_close(res, "P02 garbage after Hello")
    expect_logged(cas, mark, "P02's garbage frame after Hello")
    alive()

    mark = cas.log_mark()
    res = tls_peer(*p02, [struct.pack(">I", 0x7FFFFFFF) + b"\x0a" * 256])
    expect_error_or_close(res, "P02 oversized frame length 0x7fffffff")
    expect_logged(cas, mark, "P02's oversized frame")
    alive()

    mark = cas.log_mark()
    pull_done = frame(FRAME_PULL_DONE, pb_field_varint(1, 99)
                      + pb_field_bytes(2, b"\x00" * 32) + pb_field_varint(3, 1))
    res = tls_peer(*p02, [hello_frame("P02", 0), pull_done], expect_hello_first=True)
    expect_error_or_close(res, "P02 unexpected PullDone")
    expect_logged(cas, mark, "P02's unexpected PullDone")
    alive()

    # None of that touched P01: still linked, and it gets the next version.
    def p01_active():
        rows = {r.get("site"): r for r in cas.status_json().get("sites", [])}
        return rows.get("P01", {}).get("link") == "active"
    wait_for(p01_active, 30, "CAS status to show P01's link active")
    h.gen_catalog(catalog, ENTRIES, 2, SEED)
    cas.cli_ok("sync", "--yes")
    wait_for(lambda: cas.catalog_state()[0] == 2, TIMEOUT, "CAS to make version 2")
    st = h.wait_converged(cas, [p01], TIMEOUT, "round 2 at P01 after the bad peers")
    check(st[0] == 2, "P01 converged on version %r" % (st,))
    log("P01 picked up version 2 with CAS's digest")


if __name__ == "__main__":
    harness.main(test, "refusals")
