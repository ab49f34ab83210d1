#!/usr/bin/env python3
"""What an approved child can make its parent do (issue 15 #4, #5, #13).

        CAS ── (HTTP on loopback)
       /   \\
     P01   P02 (approved; played by a raw TLS client with P02's certificate)
      |
     S01

1. Status rows (#4): P02's own row naming parent ZZZ, then P01, is refused
   (message 7112, "the child's row names parent 'ZZZ', not CAS"); CAS keeps
   P02 under itself and never shows the row; the same row naming CAS is
   then taken (so only the parent check refused it).
2. Claimed versions (#5): PullRequests from versions CAS never produced get
   an Error frame (-503) naming the version, the connection is closed, CAS
   logs it, and no stream is produced; a PullRequest from CAS's own version
   is served.
3. Removed children (#13): `child remove S01` at P01 makes S01 vanish at
   CAS too (P01's next report no longer carries it); `child remove P01`
   and `child remove P02` at CAS drop them (and P01's subtree) from
   `status --json` and /metrics at once, and `sync --wait` for a new
   version returns without waiting for them.
4. Spool disk (#5): with [replication] spool_max_mb = 1 (reloaded), a full
   snapshot larger than 1 MiB is refused with an Error naming the key, and
   no stream file is left behind.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_status  # noqa: E402
from harness import (FRAME_HELLO, FRAME_PULL_DONE, check, frame,  # noqa: E402
                     hello_frame, log, pb_field_varint, read_frames, send_quietly,
                     tls_connect, wait_for)
from test_status import (FRAME_STATUS_REPORT, MSG_ROWS_REFUSED, build_hierarchy,  # noqa: E402
                         http_get, rows_of, site_status)

SUCCEEDED = 2
TIMEOUT = 120
BIG_ENTRIES = 700           # a snapshot well over 1 MiB


def p02_session(h, cas, v):
    certs = h.certs
    s, err = tls_connect(cas.port, certs.ca, certs.cert("P02"), certs.key("P02"))
    check(s is not None, "P02 TLS connect: %s" % err)
    e = send_quietly(s, hello_frame("P02", v))
    res = read_frames(s, 15, stop_after=FRAME_HELLO)
    check(not e and res.has(FRAME_HELLO), "CAS did not answer P02's Hello: %r %s" % (res, e or ""))
    return s


def refusals(cas):
    hist = json.loads(cas.cli_ok("history", "--json", "--limit", "500"))
    return [m for m in hist.get("messages", [])
            if m.get("msg_id") in (MSG_ROWS_REFUSED, str(MSG_ROWS_REFUSED))]


def status_parent_checked(h, hy, v):
    cas = hy["CAS"]
    s = p02_session(h, cas, v)
    try:
        for parent in ("ZZZ", "P01"):
            before = len(refusals(cas))
            now = int(time.time())
            e = send_quietly(s, frame(FRAME_STATUS_REPORT, harness.pb_field_bytes(
                1, site_status("P02", parent, SUCCEEDED, v, now))))
            check(e is None, "sending the StatusReport: %s" % e)
            want = "the child's row names parent '%s', not CAS" % parent
            wait_for(lambda: len(refusals(cas)) > before and
                     [m for m in refusals(cas) if want in m.get("text", "")] or None, 30,
                     "message %d saying %r" % (MSG_ROWS_REFUSED, want))
            _, rows = rows_of(cas)
            # Never heard from: the placeholder row of an approved child.
            check(rows.get("P02", {}).get("parent") == "CAS" and
                  rows["P02"].get("state") == "idle" and rows["P02"].get("catalog_version") == 0,
                  "CAS took P02's row under %s: %s" % (parent, json.dumps(rows.get("P02"))))
            under_p01 = sorted(c for c, r in rows.items() if r.get("parent") == "P01")
            check(under_p01 == ["S01"], "sites under P01 at CAS: %s" % under_p01)
            log("P02's row under %s refused: %s" % (parent, want))
        # The same row under CAS is taken: only the parent was wrong.
        send_quietly(s, frame(FRAME_STATUS_REPORT, harness.pb_field_bytes(
            1, site_status("P02", "CAS", SUCCEEDED, v, int(time.time())))))
        wait_for(lambda: rows_of(cas)[1]["P02"].get("state") == "succeeded" or None, 30,
                 "CAS to take P02's row under CAS")
    finally:
        s.close()


def pull_request(have, full=False):
    body = pb_field_varint(1, have) + (pb_field_varint(2, 1) if full else b"")
    return frame(harness.FRAME_PULL_REQUEST, body)


def spool_files(site):
    d = os.path.join(site.state_dir, "spool")
    return sorted(n for n in os.listdir(d) if n.endswith(".stream")) if os.path.isdir(d) else []


def bogus_have_refused(h, hy, v):
    cas = hy["CAS"]
    files = spool_files(cas)
    for have in (v + 1000, v + 1001, v + 1):
        mark = cas.log_mark()
        s = p02_session(h, cas, v)
        try:
            send_quietly(s, pull_request(have))
            res = read_frames(s, 15)
        finally:
            s.close()
        want = ("PullRequest from version %d, which this site never produced (it holds %d)"
                % (have, v))
        check(res.errors() == [(-503, want)] and res.closed,
              "PullRequest from %d: %r %r" % (have, res, res.errors()))
        text = cas.log_since(mark)
        check("child P02: " + want in text, "CAS did not log the refusal:\n%s" % text[-2000:])
        check("produced stream" not in text, "CAS produced a stream for have %d" % have)
    check(spool_files(cas) == files, "spool files %s, before %s" % (spool_files(cas), files))
    log("PullRequests from versions CAS never produced: Error -503, closed, no spool")
    # Control: the version CAS holds is served (an empty delta).
    s = p02_session(h, cas, v)
    try:
        send_quietly(s, pull_request(v))
        res = read_frames(s, 30, stop_after=FRAME_PULL_DONE)
    finally:
        s.close()
    check(res.has(FRAME_PULL_DONE) and not res.errors(), "PullRequest from %d: %r" % (v, res))


def metrics_sites(cas):
    status, text = http_get(cas.http_port, "/metrics")
    check(status == 200, "/metrics answered %d" % status)
    return {code for code in ("CAS", "P01", "P02", "S01") if 'site="%s"' % code in text}


def removed_children_dropped(h, hy):
    cas, p01 = hy["CAS"], hy["P01"]
    p01.cli_ok("child", "remove", "S01")
    wait_for(lambda: "S01" not in rows_of(cas)[1] or None, 30,
             "CAS to drop S01 after P01 removed it")
    check("S01" not in metrics_sites(cas), "/metrics still has S01")
    log("P01 removed S01: CAS dropped it from status and /metrics")
    cas.cli_ok("child", "remove", "P01")
    cas.cli_ok("child", "remove", "P02")
    _, rows = rows_of(cas)
    check(set(rows) == {"CAS"}, "CAS still lists %s after the removals" % sorted(rows))
    check(metrics_sites(cas) == {"CAS"}, "/metrics lists %s" % sorted(metrics_sites(cas)))
    log("CAS removed P01 and P02: status --json and /metrics list CAS only")
    hy.round += 1
    h.gen_catalog(hy.catalog, BIG_ENTRIES, hy.round, test_status.SEED)
    t0 = time.monotonic()
    rc, out, err = cas.cli("sync", "--yes", "--wait", "--timeout", "60", timeout=90)
    check(rc == 0, "sync --wait exited %d: %s %s" % (rc, out[-500:], err[-500:]))
    log("sync --wait returned in %.1fs: %s" % (time.monotonic() - t0, out.strip().splitlines()[-1]))
    return cas.catalog_state()[0]


def spool_bounded(h, hy, v):
    cas = hy["CAS"]
    cas.cli_ok("child", "add", "P02")
    cas.extra.setdefault("replication", {})["spool_max_mb"] = "1"
    cas.write_config()
    mark = cas.log_mark()
    cas.proc.send_signal(1)
    wait_for(lambda: "configuration reloaded" in cas.log_since(mark), 20, "CAS to reload")
    s = p02_session(h, cas, v)
    try:
        send_quietly(s, pull_request(0, full=True))
        res = read_frames(s, 60)
    finally:
        s.close()
    errs = res.errors()
    check(len(errs) == 1 and "over the limit of 1048576 ([replication] spool_max_mb)" in errs[0][1]
          and res.closed and not res.has(FRAME_PULL_DONE), "a snapshot over 1 MiB: %r %r" % (res, errs))
    log("snapshot over spool_max_mb refused: %s" % errs[0][1])
    wait_for(lambda: spool_files(cas) == [] or None, 10, "the refused stream file to go")


def test(h):
    hy = build_hierarchy(h)
    v = hy["CAS"].catalog_state()[0]
    status_parent_checked(h, hy, v)
    bogus_have_refused(h, hy, v)
    v = removed_children_dropped(h, hy)
    spool_bounded(h, hy, v)


if __name__ == "__main__":
    harness.main(test, "child_guards")
