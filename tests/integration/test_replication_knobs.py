#!/usr/bin/env python3
"""[replication] batch_entries, max_frame and request_wave /
request_wave_ms, seen by raw TLS children of one top site CAS.

1. batch_entries: a full pull of ENTRIES entries arrives in Batch frames of
   exactly BATCH entries (the last one holds the rest).
2. max_frame: after the Hello exchange, a frame header announcing
   MAX_FRAME + 1 bytes is refused with Error SS_ETOOBIG "frame of N bytes
   exceeds the limit of MAX_FRAME" and the connection is closed.
3. request_wave / request_wave_ms: four connected children at CAS's
   version; a new version is announced (SyncRequest) to WAVE of them at
   once and to the next WAVE request_wave_ms later.
4. sync --wait --timeout 3 with those children connected and never
   pulling: exit status 2, "timed out after 3 s; not at version V yet"
   and each child named.

SS_PHASES=batch,frame,wave (the default: all) runs a subset.
"""

import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (check, log, wait_for, frame, hello_frame, read_frames,  # noqa: E402
                     send_quietly, tls_connect, pb_decode, PeerResult,
                     FRAME_BATCH, FRAME_HELLO, FRAME_ERROR, FRAME_SYNC_REQUEST)

ENTRIES = 250
SEED = 29
BATCH = 40
MAX_FRAME = 1000000
WAVE = 2
WAVE_MS = 1500
CHILDREN = ["R01", "R02", "R03", "R04"]
TIMEOUT = 120
SS_ETOOBIG = -502


def connect_child(h, cas, code, version):
    c = h.certs
    s, err = tls_connect(cas.port, c.ca, c.cert(code), c.key(code))
    check(s is not None, "%s: TLS to CAS failed: %s" % (code, err))
    e = send_quietly(s, hello_frame(code, version))
    check(not e, "%s: sending Hello failed: %s" % (code, e))
    res = read_frames(s, 20, stop_after=FRAME_HELLO)
    check(res.has(FRAME_HELLO), "%s: no Hello from CAS: %r %r" % (code, res, res.errors()))
    return s


def phase_batches(h, cas):
    entries, done, res = harness.raw_pull(h, cas.port, "R01", harness.proto_version())
    sizes = []
    for f, body in res.frames:
        if f == FRAME_BATCH:
            sizes.append(sum(1 for fld, _, _ in pb_decode(body) if fld == 1))
    want = [BATCH] * (ENTRIES // BATCH) + ([ENTRIES % BATCH] if ENTRIES % BATCH else [])
    check(len(entries) == ENTRIES, "the pull gave %d entries, want %d" % (len(entries), ENTRIES))
    check(sizes == want, "Batch frames of %r entries, [replication] batch_entries = %d wants %r"
          % (sizes, BATCH, want))
    log("batch_entries: %d entries in Batch frames of %r" % (len(entries), sizes))


def phase_max_frame(h, cas, version):
    s = connect_child(h, cas, "R02", version)
    try:
        e = send_quietly(s, struct.pack(">I", MAX_FRAME + 1) + b"\x00" * 64)
        check(not e, "sending the oversized header failed: %s" % e)
        res = read_frames(s, 20)
    finally:
        s.close()
    want = (SS_ETOOBIG, "frame of %d bytes exceeds the limit of %d" % (MAX_FRAME + 1, MAX_FRAME))
    check(res.errors() == [want], "an oversized frame got %r (%r), want Error %r"
          % (res.errors(), res, want))
    check(res.closed, "CAS kept the connection open after the oversized frame: %r" % res)
    log("max_frame: %r, then %s" % (want, res.how))


def phase_waves(h, cas, catalog, version):
    socks = {code: connect_child(h, cas, code, version) for code in CHILDREN}
    got = {}
    lock = threading.Lock()

    def listen(code, s):
        res = PeerResult()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not res.closed:
            n = len(res.frames)
            read_frames(s, 1, stop_after=FRAME_SYNC_REQUEST, result=res)
            for f, body in res.frames[n:]:
                if f != FRAME_SYNC_REQUEST:
                    continue
                v = dict((fld, val) for fld, _, val in pb_decode(body)).get(1, 0)
                if v > version:
                    with lock:
                        got[code] = time.monotonic()
                    return

    threads = [threading.Thread(target=listen, args=(c, s), daemon=True)
               for c, s in socks.items()]
    for t in threads:
        t.start()
    h.gen_catalog(catalog, ENTRIES, 2, SEED)
    cas.cli_ok("sync", "--yes")
    for t in threads:
        t.join(90)
    check(sorted(got) == CHILDREN, "a SyncRequest for the new version reached only %r"
          % sorted(got))
    times = sorted(got.values())
    first, second = times[:WAVE], times[WAVE:]
    spread = [round(t - times[0], 2) for t in times]
    check(max(first) - min(first) < 0.5 and max(second) - min(second) < 0.5,
          "the children were not told in two waves of %d: %r" % (WAVE, spread))
    gap = min(second) - max(first)
    check(WAVE_MS / 1000.0 - 0.5 <= gap <= WAVE_MS / 1000.0 + 1.0,
          "the second wave came %.2f s after the first, request_wave_ms = %d: %r"
          % (gap, WAVE_MS, spread))
    log("request_wave: SyncRequests at %r s" % spread)
    return socks


def phase_sync_timeout(h, cas, socks):
    """sync --wait --timeout with children connected but never pulling:
    exit status 2 and the children still behind, by name."""
    t0 = time.monotonic()
    rc, out, err = cas.cli("sync", "--yes", "--wait", "--timeout", "3", timeout=60)
    took = time.monotonic() - t0
    for s in socks.values():
        s.close()
    top = cas.catalog_state()[0]
    want = "sitesync: timed out after 3 s; not at version %d yet: " % top
    check(rc == 2 and err.startswith(want),
          "sync --wait --timeout 3: exit %d, stderr %r; want exit 2 and %r" % (rc, err, want))
    for code in CHILDREN:
        check("%s (version " % code in err, "%s missing from the timeout message %r" % (code, err))
    check(3 <= took < 10, "sync --timeout 3 returned after %.1f s" % took)
    log("sync --timeout: exit 2 after %.1f s: %s" % (took, err.strip()))


def test(h):
    catalog = h.gen_catalog(h.path("upstream", "catalog.xml"), ENTRIES, 1, SEED)
    cas = h.add_site("CAS", upstream="file://" + catalog, extra={
        "replication": {"batch_entries": str(BATCH), "max_frame": str(MAX_FRAME),
                        "request_wave": str(WAVE), "request_wave_ms": str(WAVE_MS),
                        "heartbeat_timeout": "60"}})
    for code in CHILDREN:
        h.certs.site(code)
    cas.start()
    for code in CHILDREN:
        cas.cli_ok("child", "add", code)
    cas.cli_ok("sync", "--yes")
    wait_for(lambda: cas.catalog_state()[0] == 1, TIMEOUT, "CAS to make version 1")
    only = os.environ.get("SS_PHASES", "batch,frame,wave").split(",")
    if "batch" in only:
        phase_batches(h, cas)
    if "frame" in only:
        phase_max_frame(h, cas, 1)
    if "wave" in only:
        socks = phase_waves(h, cas, catalog, 1)
        phase_sync_timeout(h, cas, socks)


if __name__ == "__main__":
    harness.main(test, "replication_knobs")
