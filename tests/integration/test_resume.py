#!/usr/bin/env python3
"""Resumable pulls (DESIGN §3, §8).

A child killed part-way through a large first pull keeps the whole frames
it stored. After a restart it asks to continue at that byte, the parent
(whose stream for the same change set is the same bytes) continues there,
and the catalog only becomes visible once the whole pull is verified.
"""

import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

ENTRIES = 1500
SEED = 9
RATE_KIB = 768
TIMEOUT = 180


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(b, i):
    n = shift = 0
    while True:
        n |= (b[i] & 0x7f) << shift
        shift += 7
        i += 1
        if not b[i - 1] & 0x80:
            return n, i


def fields(b):
    """(field number, raw bytes of the whole field) of a packed message;
    only varint and length-delimited fields occur in these frames."""
    out, i = [], 0
    while i < len(b):
        start = i
        tag, i = read_varint(b, i)
        if tag & 7 == 0:
            _, i = read_varint(b, i)
        elif tag & 7 == 2:
            n, i = read_varint(b, i)
            i += n
        else:
            raise ValueError("wire type %d" % (tag & 7))
        out.append((tag >> 3, b[start:i]))
    return out


def frames(data):
    out, i = [], 0
    while i + 4 <= len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        if i + 4 + n > len(data):
            break
        out.append(data[i:i + 4 + n])
        i += 4 + n
    return out


def drop_last_entry(frame):
    """A Batch frame without its last entry: still a valid frame, but
    shorter than the one the parent holds at this place."""
    (num, raw), = fields(frame[4:])
    assert num == 5, "not a Batch frame"
    _, i = read_varint(raw, 0)
    _, i = read_varint(raw, i)
    fs = fields(raw[i:])
    last_id = max(k for k, (n, _) in enumerate(fs) if n == 1)
    last_entry = max(k for k, (n, _) in enumerate(fs) if n == 2)
    batch = b"".join(r for k, (_, r) in enumerate(fs) if k not in (last_id, last_entry))
    body = bytes([5 << 3 | 2]) + varint(len(batch)) + batch
    return struct.pack(">I", len(body)) + body


def misaligned_resume(h, cas):
    """A stored partial stream whose frames decode but are not the
    parent's bytes (here one Batch lost an entry) asks to resume at an
    offset inside one of the parent's frames. Continuing there would feed
    the child a torn frame on every retry; the parent sends the whole
    stream instead and the child converges."""
    p02 = h.add_site("P02", parent=cas, listen=False)
    cas.cli_ok("child", "add", "P02")
    p02.start()
    partial = os.path.join(p02.state_dir, "pull.stream")
    wait_for(lambda: os.path.exists(partial) and os.path.getsize(partial) > 3 << 20, TIMEOUT,
             "P02 to store over 3 MiB of its pull")
    p02.kill()
    with open(partial, "rb") as f:
        fr = frames(f.read())
    check(len(fr) >= 3, "P02 stored %d whole frames" % len(fr))
    fr[1] = drop_last_entry(fr[1])
    with open(partial, "wb") as f:
        f.write(b"".join(fr))
    kept = os.path.getsize(partial)
    mark = cas.log_mark()
    p02.start()
    h.wait_converged(cas, [p02], TIMEOUT, "P02 to finish after a resume the parent refused")
    text = cas.log_since(mark)
    check(re.search(r"child P02: cannot resume its pull at byte %d" % kept, text),
          "CAS did not refuse to continue P02's pull inside a frame")
    check("child P02: resuming" not in text, "CAS continued P02's pull inside a frame")
    rc, out, err = p02.cli("verify")
    check(rc == 0, "verify at P02 exited %d: %s%s" % (rc, out, err))
    log("P02's doctored partial stream (%d bytes) was replaced by the whole stream" % kept)


def test(h):
    cas, _ = h.add_top(ENTRIES, SEED,
                       extra={"replication": {"rate_limit_kib": str(RATE_KIB)}})
    p01 = h.add_site("P01", parent=cas, listen=False)
    cas.start()
    cas.cli_ok("child", "add", "P01")
    p01.start()
    cas.cli_ok("sync", "--yes")

    partial = os.path.join(p01.state_dir, "pull.stream")
    wait_for(lambda: os.path.exists(partial) and os.path.getsize(partial) > 1 << 20, TIMEOUT,
             "P01 to store over 1 MiB of its first pull")
    p01.kill()
    kept = os.path.getsize(partial)
    check(p01.catalog_state()[0] == 0, "P01 exposed a catalog before its pull was complete")
    log("P01 killed with %d bytes of the stream stored; its catalog is still empty" % kept)

    p01.start()
    h.wait_converged(cas, [p01], TIMEOUT, "P01 to finish its resumed pull")
    with open(p01.logfile) as f:
        m = re.search(r"parent CAS resumes the pull at byte (\d+)", f.read())
    check(m is not None, "P01 did not resume its pull (no 'resumes the pull' line)")
    at = int(m.group(1))
    check(0 < at <= kept, "resumed at byte %d, but %d bytes were stored" % (at, kept))
    # CAS notes the end of its spool file at its next rate-limit tick, which
    # can come after P01 has applied the stream (it applies as it arrives).
    def served_lines():
        with open(cas.logfile) as f:
            return re.findall(r"child P01: served versions 0->1 as a snapshot "
                              r"\(\d+ changes, (\d+) bytes\)", f.read())
    served = wait_for(served_lines, 10, "CAS to finish serving P01")
    log("P01 resumed at byte %d of %s and converged with CAS's digest" % (at, served[-1]))
    # The stored stream is a snapshot, so the resumed pull asks for one;
    # from version 0 that is the stream already spooled, not a second scan.
    produced = re.findall(r"produced stream 0->1 \(snapshot\)", cas.log_text())
    check(len(produced) == 1, "CAS produced the 0->1 snapshot %d times" % len(produced))
    rc, out, err = p01.cli("verify")
    check(rc == 0, "verify at P01 exited %d: %s%s" % (rc, out, err))
    misaligned_resume(h, cas)


if __name__ == "__main__":
    harness.main(test, "resume")
