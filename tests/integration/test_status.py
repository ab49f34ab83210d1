#!/usr/bin/env python3
"""Hierarchy status as the top site sees it: failures, staleness, refusals.

        CAS ── (HTTP on loopback)
       /   \\
     P01   P02 (approved; this test plays it with a raw TLS client)
      |
     S01

1. S01's database goes away (connections refused, sessions terminated);
   a new version made at CAS cannot be applied there: CAS's
   `status --json` shows S01 "failed" with last_error and last_error_code.
   Once the database is back S01 retries by itself and CAS shows it
   "succeeded" at the top version.
2. /metrics of CAS passes tests/unit/check_metrics.py with samples for
   every site, and S01's catalog version as `status --json` reports it.
3. P02's certificate sends a StatusReport with its own row plus rows for
   S01 (outside its subtree) and ZZZ under YYY: CAS keeps S01 under P01,
   lists no ZZZ, and records message 7112 (rows refused). The same with
   protocol 2 and rows validly signed by their own sites, one rule at a
   time: S01 claimed under P02 (P01 reports it) and X77 under P01 (outside
   P02's subtree), each refused with its own reason.
4. S01 is SIGKILLed: CAS shows it "stale" within heartbeat_timeout plus a
   small margin.

build_hierarchy() is shared with test_dashboard.py and test_alerts.py.
"""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (FRAME_HELLO, NotYet, PortLock, check, frame,  # noqa: E402
                     hello_frame, log, pb_field_bytes, pb_field_varint,
                     read_frames, send_quietly, tls_connect, wait_for)

ENTRIES = 300
SEED = 11
TIMEOUT = 180
HEARTBEAT_TIMEOUT = 3           # what harness.Site writes
STALE_MARGIN = 4                # report interval, whole-second rounding, polling, load
FRAME_STATUS_REPORT = 7
SYNC_FAILED = 3
MSG_ROWS_REFUSED = 7112


class Hierarchy:
    """The sites of one test and the upstream catalog file of CAS."""

    def __init__(self, h, catalog, rnd):
        self.h = h
        self.catalog = catalog
        self.round = rnd
        self.sites = {}

    def __getitem__(self, code):
        return self.sites[code]

    def next_round(self):
        """Write the next generator round and sync CAS; wait for its version."""
        cas = self.sites["CAS"]
        before = cas.catalog_state()[0]
        self.round += 1
        self.h.gen_catalog(self.catalog, ENTRIES, self.round, SEED)
        cas.cli_ok("sync", "--yes")
        return wait_for(lambda: cas.catalog_state()[0] > before and cas.catalog_state()[0],
                        TIMEOUT, "CAS to make round %d" % self.round)


def build_hierarchy(h, cas_extra=None, start_p02=False):
    """CAS (with HTTP) -> P01 -> S01, P02 approved under CAS; round 1 synced.

    P02's daemon is started only when start_p02 is set; its certificate and
    config exist either way.
    """
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    h.gen_catalog(catalog, ENTRIES, 1, SEED)
    lock = PortLock()
    extra = {"http": {"listen": "127.0.0.1:%d" % lock.port}}
    for name, kv in (cas_extra or {}).items():
        extra.setdefault(name, {}).update(kv)
    cas = h.add_site("CAS", upstream="file://" + catalog, extra=extra)
    cas.http_port = lock.port
    p01 = h.add_site("P01", parent=cas)
    p02 = h.add_site("P02", parent=cas, listen=False)
    s01 = h.add_site("S01", parent=p01, listen=False)
    lock.release()          # CAS binds it next; nobody else takes it from the lock dir
    cas.start()
    cas.cli_ok("child", "add", "P01")
    cas.cli_ok("child", "add", "P02")
    p01.start()
    p01.cli_ok("child", "add", "S01")
    s01.start()
    running = [p01, s01]
    if start_p02:
        p02.start()
        running.append(p02)
    hy = Hierarchy(h, catalog, 1)
    hy.sites = {"CAS": cas, "P01": p01, "P02": p02, "S01": s01}
    cas.cli_ok("sync", "--yes")
    h.wait_converged(cas, running, TIMEOUT, "round 1 at %s"
                     % [s.code for s in running])
    log("round 1 at CAS and %s" % [s.code for s in running])
    return hy


def rows_of(site):
    doc = site.status_json()
    return doc, {r.get("site"): r for r in doc.get("sites", [])}


def wait_state(site, code, pred, timeout, what):
    """Poll `status --json` at site until pred(row of code, doc) holds."""
    def ok():
        doc, rows = rows_of(site)
        r = rows.get(code)
        if r is None:
            raise NotYet("%s not listed at %s" % (code, site.code))
        if not pred(r, doc):
            raise NotYet("%s row at %s: %s" % (code, site.code, json.dumps(r)))
        return r
    return wait_for(ok, timeout, what, interval=0.2)


def http_get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                timeout=10) as resp:
        return resp.status, resp.read().decode("utf-8")


def system_python():
    """Debian's python3 has python3-prometheus-client; a pyenv copy may not."""
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else \
        (shutil.which("python3") or sys.executable)


def check_metrics(h, cas, sites, expect=()):
    """Validate CAS's /metrics with tests/unit/check_metrics.py."""
    status, text = http_get(cas.http_port, "/metrics")
    check(status == 200, "/metrics answered %d" % status)
    tool = os.path.join(h.src, "tests", "unit", "check_metrics.py")
    argv = [system_python(), tool, "--sites", ",".join(sorted(sites))]
    for e in expect:
        argv += ["--expect", e]
    p = subprocess.run(argv, input=text, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=60)
    if p.returncode == 3:
        raise harness.Skip("check_metrics.py: %s" % p.stderr.strip())
    return p.returncode, p.stderr, text


def break_database(h, site):
    """New connections to site's database are refused, open ones cut."""
    db = site.dbname
    h.pg.query("postgres", 'ALTER DATABASE "%s" ALLOW_CONNECTIONS false' % db)
    # The session holding the writer lock stays: losing it makes the daemon
    # step down for a standby (by design), which is not the failure we want.
    n = h.pg.query("postgres", "SELECT count(pg_terminate_backend(a.pid)) FROM "
                   "pg_stat_activity a WHERE a.datname = '%s' AND NOT EXISTS ("
                   "SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND "
                   "l.locktype = 'advisory' AND l.granted)" % db)
    log("%s's database refuses connections; %s worker sessions terminated"
        % (site.code, n))


def restore_database(h, site):
    h.pg.query("postgres", 'ALTER DATABASE "%s" ALLOW_CONNECTIONS true' % site.dbname)
    log("%s's database is back" % site.code)


def failure_at_leaf(h, hy):
    cas, s01 = hy["CAS"], hy["S01"]
    break_database(h, s01)
    v = hy.next_round()
    log("CAS made version %d" % v)
    r = wait_state(cas, "S01", lambda r, d: r.get("state") == "failed", TIMEOUT,
                   "CAS to show S01 failed")
    check(r.get("last_error"), "S01 failed without last_error: %r" % r)
    check(isinstance(r.get("last_error_code"), int) and r["last_error_code"] != 0,
          "S01 failed with last_error_code %r" % r.get("last_error_code"))
    check(r.get("catalog_version", 0) < v, "failed S01 claims version %r of %d"
          % (r.get("catalog_version"), v))
    log("CAS shows S01 failed: code %d, %r" % (r["last_error_code"], r["last_error"]))

    restore_database(h, s01)
    r = wait_state(cas, "S01", lambda r, d: r.get("state") == "succeeded"
                   and r.get("catalog_version") == d.get("top_version") == v,
                   TIMEOUT, "CAS to show S01 succeeded at version %d" % v)
    check(r.get("last_error_code") == 0 and r.get("last_error") is None,
          "recovered S01 still shows an error: %r" % r)
    check(s01.catalog_state()[0] == v, "S01 database at %r" % (s01.catalog_state(),))
    log("S01 recovered: succeeded at version %d" % v)
    return v


def metrics_for_every_site(h, hy, v):
    cas = hy["CAS"]
    _, rows = rows_of(cas)
    sites = set(rows)
    check({"CAS", "P01", "P02", "S01"} <= sites, "status lists %s" % sorted(sites))
    expect = ['sitesync_catalog_version{site="%s"}=%d' % (c, rows[c]["catalog_version"])
              for c in ("CAS", "P01", "S01")]
    expect.append("sitesync_top_version=%d" % v)
    rc, err, text = check_metrics(h, cas, sites, expect)
    check(rc == 0, "check_metrics.py rejected /metrics (%d):\n%s\n--- metrics:\n%s"
          % (rc, err, text[:4000]))
    log("/metrics valid, samples for %s" % sorted(sites))


def site_status(site, parent, state, version, reported_at):
    return (pb_field_bytes(1, site) + pb_field_bytes(2, parent)
            + pb_field_varint(4, state) + pb_field_varint(9, version)
            + pb_field_varint(21, reported_at))


def foreign_rows_refused(h, hy, v):
    cas = hy["CAS"]
    certs = h.certs
    mark = cas.log_mark()
    s, err = tls_connect(cas.port, certs.ca, certs.cert("P02"), certs.key("P02"))
    check(s is not None, "P02 TLS connect: %s" % err)
    try:
        e = send_quietly(s, hello_frame("P02", v))
        res = read_frames(s, 15, stop_after=FRAME_HELLO)
        check(not e and res.has(FRAME_HELLO), "CAS did not answer P02's Hello: %r %s"
              % (res, e or ""))
        now = int(time.time())
        report = b"".join(pb_field_bytes(1, row) for row in (
            site_status("P02", "CAS", 2, v, now),
            site_status("S01", "P02", SYNC_FAILED, 0, now),
            site_status("S01", "P01", SYNC_FAILED, 0, now),
            site_status("ZZZ", "YYY", SYNC_FAILED, 0, now)))
        e = send_quietly(s, frame(FRAME_STATUS_REPORT, report))
        check(e is None, "sending the StatusReport: %s" % e)

        def refused_recorded():
            hist = json.loads(cas.cli_ok("history", "--json", "--limit", "200"))
            return [m for m in hist.get("messages", [])
                    if m.get("msg_id") in (MSG_ROWS_REFUSED, str(MSG_ROWS_REFUSED))]
        msgs = wait_for(refused_recorded, 30, "message %d in CAS's history"
                        % MSG_ROWS_REFUSED)
        log("CAS history: %s" % msgs[0])
        _, rows = rows_of(cas)
        check("ZZZ" not in rows and "YYY" not in rows,
              "CAS took rows from outside P02's subtree: %s" % sorted(rows))
        check(rows["S01"].get("parent") == "P01",
              "P02 took over S01: %s" % json.dumps(rows["S01"]))
        check(rows["S01"].get("state") != "failed",
              "P02's forged S01 row reached CAS: %s" % json.dumps(rows["S01"]))
        check(rows["P02"].get("parent") == "CAS", "P02 row %r" % rows["P02"])
        check(cas.running(), "CAS died")
    finally:
        s.close()
    check("ZZZ" in cas.log_since(mark) or "S01" in cas.log_since(mark),
          "CAS log does not name a refused row")
    log("P02's rows for S01 and ZZZ refused; S01 stays under P01")


def signed_row(h, code, row):
    """A SignedRow as site `code` would sign it (EC P-256 test keys)."""
    certs = h.certs
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", certs.key(code)],
                         input=row, capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "x509", "-in", certs.cert(code), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    return pb_field_bytes(1, row) + pb_field_bytes(2, sig) + pb_field_bytes(3, der)


def signed_rows_refused(h, hy, v):
    """Protocol 2, every row validly signed by its own site: only the
    subtree rule and the owning-child rule can refuse them, one at a time."""
    cas = hy["CAS"]
    certs = h.certs
    certs.site("X77")
    now = int(time.time())
    cases = (
        # S01 claimed under P02: inside P02's subtree by its parent, but
        # P01 (connected) reports it.
        ("S01", "P02", "site reported through another child"),
        # X77, unknown at CAS, under P01: outside P02's subtree.
        ("X77", "P01", "site outside the child's subtree"),
    )
    for site, parent, reason in cases:
        s, err = tls_connect(cas.port, certs.ca, certs.cert("P02"), certs.key("P02"))
        check(s is not None, "P02 TLS connect: %s" % err)
        try:
            e = send_quietly(s, hello_frame("P02", v, protocol_version=2))
            res = read_frames(s, 15, stop_after=FRAME_HELLO)
            check(not e and res.has(FRAME_HELLO), "CAS did not answer P02's Hello: %r" % res)
            report = b"".join(pb_field_bytes(2, signed_row(h, code, row)) for code, row in (
                ("P02", site_status("P02", "CAS", 2, v, now)),
                (site, site_status(site, parent, SYNC_FAILED, 0, now))))
            check(send_quietly(s, frame(FRAME_STATUS_REPORT, report)) is None,
                  "sending the StatusReport")
            want = "Child site P02 reported 1 status row(s) that were refused (first: %s: %s)" % (
                site, reason)

            def refused():
                _, rows = rows_of(cas)
                check("X77" not in rows, "CAS took X77 from P02: %r" % rows.get("X77"))
                check(rows["S01"].get("parent") == "P01" and rows["S01"]["state"] != "failed",
                      "P02 took over S01: %s" % json.dumps(rows["S01"]))
                hist = json.loads(cas.cli_ok("history", "--json", "--limit", "200"))
                return [m for m in hist["messages"] if str(m["msg_id"]) == str(MSG_ROWS_REFUSED)
                        and m["text"] == want]
            wait_for(refused, 30, "CAS to record %r" % want)
            _, rows = rows_of(cas)
            check(rows["P02"].get("parent") == "CAS", "P02's own row %r" % rows.get("P02"))
        finally:
            s.close()
        log("signed row for %s under %s refused: %s" % (site, parent, reason))


def leaf_goes_stale(h, hy):
    cas, s01 = hy["CAS"], hy["S01"]
    wait_state(cas, "S01", lambda r, d: r.get("state") == "succeeded", 30,
               "S01 to read succeeded before the kill")
    s01.kill()
    t0 = time.monotonic()
    limit = HEARTBEAT_TIMEOUT + STALE_MARGIN
    wait_state(cas, "S01", lambda r, d: r.get("state") == "stale", 60,
               "CAS to show the killed S01 stale")
    took = time.monotonic() - t0
    log("S01 SIGKILLed: stale at CAS after %.1fs (limit %ds)" % (took, limit))
    check(took <= limit, "S01 took %.1fs to turn stale at CAS, limit %ds" % (took, limit))


def test(h):
    hy = build_hierarchy(h)
    v = failure_at_leaf(h, hy)
    metrics_for_every_site(h, hy, v)
    foreign_rows_refused(h, hy, v)
    signed_rows_refused(h, hy, v)
    leaf_goes_stale(h, hy)


if __name__ == "__main__":
    harness.main(test, "status")
