#!/usr/bin/env python3
"""Write the seed corpora of the libFuzzer targets into tests/fuzz/corpus/.

  gen_corpus.py [OUT_DIR]     (default: corpus/ next to this script)

Seeds are small valid inputs (and a few near-valid ones) for each target:
  frame/    single frames of every message type, and a few back to back
  stream/   pull streams (PullStart, Batch..., PullDone), a bundle, a
            truncated stream
  entry/    be32(revision) || packed UpdateContent
  catalog/  the hand-written catalogs of tests/data/catalog/ and small
            generated ones (UTF-8, UTF-8 with BOM and CRLF, UTF-16)
Output is deterministic; rerun after changing proto/sitesync.proto.
"""
import hashlib
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import pb_field_bytes as fb, pb_field_varint as fv  # noqa: E402

IDS = ["3f1c2a9e-5b7d-4c11-9a0e-0d6f1e2b3c4d",
       "b2a4c6d8-e0f2-4a1b-8c3d-5e7f9a1b3c5d",
       "00000000-0000-4000-8000-000000000000"]


def frame(field, body):
    payload = fb(field, body)
    return struct.pack(">I", len(payload)) + payload


def update_file(name):
    return (fb(1, name) + fv(2, 123456) + fb(3, "q83vEjRWeJq83vEjRWeJq83vEjQ=")
            + fb(5, "https://vendor.example/" + name) + fb(6, "2026-01-02T03:04:05Z"))


def content(uid, title="Contoso Browser 1.2 security update", expired=False,
            source="upstream"):
    c = (fb(1, uid) + fb(2, title) + fb(3, "Fixes things.\tTabs\nand newlines\\")
         + fb(4, "Contoso Ltd") + fb(5, "contoso-browser") + fb(5, "contoso-mail")
         + fb(6, "0fa1201d-4330-4fa8-8ae9-b877473b6441") + fb(7, "en") + fb(7, "de")
         + fb(8, "Critical") + fb(9, "KB500123") + fb(10, "CSB-2026-001")
         + fb(11, "CVE-2026-0001") + fb(12, "2026-01-02") + fb(13, IDS[1])
         + fb(14, IDS[2]) + fb(16, update_file("setup.exe"))
         + fb(19, "<sdp:SoftwareDistributionPackage/>") + fb(20, "https://i.example/")
         + fb(22, "2026-01-01T00:00:00"))
    if expired:
        c += fv(17, 1)
    if source:
        c += fb(18, source)
    return c


def entry(rev, uid, **kw):
    return fv(1, rev) + fb(2, content(uid, **kw))


def hello(site="P01", ver=3):
    return (fv(1, 1) + fb(2, site) + fb(3, "0.1.0") + fv(4, ver)
            + fb(5, b"\x11" * 32) + fv(6, ver + 1))


def batch(n0, n1, deletes=()):
    b = b""
    for i in range(n0, n1):
        b += fb(1, IDS[i % len(IDS)])
    for i in range(n0, n1):
        b += fb(2, entry(i + 1, IDS[i % len(IDS)]))
    for d in deletes:
        b += fb(3, d)
    return b


def status_row(site, parent):
    return (fb(1, site) + fb(2, parent) + fb(3, parent) + fv(4, 2) + fv(5, 1700000000)
            + fv(6, 1700000060) + fv(7, (-506) & ((1 << 64) - 1)) + fb(8, "digest mismatch")
            + fv(9, 3) + fv(10, 4) + fv(11, 1) + fv(12, 1700000070) + fv(13, 5)
            + fb(17, "0.1.0") + fv(19, 2))


DIGEST = hashlib.sha256(b"catalog").digest()

FRAMES = {
    "hello": frame(1, hello()),
    "sync_request": frame(2, fv(1, 7) + fv(2, 1) + fv(3, 7)),
    "pull_request": frame(3, fv(1, 3) + fv(3, 7) + fv(4, 4096)),
    "pull_start": frame(4, fv(1, 3) + fv(2, 7) + fv(4, 2) + fv(5, 1) + fv(6, 999)),
    "batch": frame(5, batch(0, 3, [IDS[2]])),
    "pull_done": frame(6, fv(1, 7) + fb(2, DIGEST) + fv(3, 3)),
    "status_report": frame(7, fb(1, status_row("P01", "CAS")) + fb(1, status_row("S01", "P01"))),
    "ping": frame(8, fv(1, 42) + fv(2, 7)),
    "pong": frame(9, fv(1, 42) + fv(2, 7) + fv(3, 7) + fb(4, DIGEST)),
    "error": frame(10, fv(1, (-503) & ((1 << 64) - 1)) + fb(2, "unexpected Batch")),
    "bundle_header": frame(11, fv(1, 1) + fb(2, "CAS") + fb(3, b"\x22" * 32) + fv(4, 0)
                           + fv(5, 7) + fb(6, DIGEST) + fv(7, 3) + fv(9, 1700000000)),
    "bundle_end": frame(12, fb(1, DIGEST)),
    "empty_hello": frame(1, b""),
    "unknown_field": struct.pack(">I", 3) + b"\xfa\x01\x00",
}


def pull_stream(full=False):
    s = frame(4, fv(1, 0 if full else 3) + fv(2, 7) + fv(3, 1 if full else 0)
              + fv(4, 3) + fv(5, 1))
    s += frame(5, batch(0, 2))
    s += frame(5, batch(2, 3, [IDS[1]]))
    s += frame(6, fv(1, 7) + fb(2, DIGEST) + fv(3, 3))
    return s


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    for sub in ("frame", "stream", "entry", "catalog"):
        d = os.path.join(out, sub)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)

    for name, data in FRAMES.items():
        write(os.path.join(out, "frame", name), data)
    write(os.path.join(out, "frame", "sequence"),
          FRAMES["hello"] + FRAMES["pull_request"] + FRAMES["ping"] + FRAMES["status_report"])

    delta = pull_stream()
    write(os.path.join(out, "stream", "delta"), delta)
    write(os.path.join(out, "stream", "snapshot"), pull_stream(full=True))
    write(os.path.join(out, "stream", "truncated"), delta[:len(delta) - 7])
    body = FRAMES["bundle_header"] + delta
    write(os.path.join(out, "stream", "bundle"),
          body + frame(12, fb(1, hashlib.sha256(body).digest())))

    for i, (rev, uid, kw) in enumerate([(1, IDS[0], {}), (7, IDS[1], {"expired": True}),
                                        (2, IDS[2], {"source": "imported"}),
                                        (1, "not-a-uuid", {}), (3, IDS[0], {"source": ""})]):
        write(os.path.join(out, "entry", "entry%d" % i),
              struct.pack(">I", rev) + content(uid, **kw))

    data = os.path.join(ROOT, "tests", "data", "catalog")
    for name in sorted(os.listdir(data)):
        shutil.copy(os.path.join(data, name), os.path.join(out, "catalog", name))
    gen = os.path.join(ROOT, "tests", "gen_catalog.py")
    for name, extra in (("gen3.xml", []), ("gen3-bom-crlf.xml", ["--bom", "--crlf"]),
                        ("gen2-utf16.xml", ["--encoding", "utf-16"])):
        n = "2" if "gen2" in name else "3"
        subprocess.run([sys.executable, gen, "--entries", n, "--round", "2",
                        "--seed", "5", "--out", os.path.join(out, "catalog", name)]
                       + extra, check=True)
    for sub in ("frame", "stream", "entry", "catalog"):
        print("%s: %d seeds" % (sub, len(os.listdir(os.path.join(out, sub)))))


if __name__ == "__main__":
    main()
