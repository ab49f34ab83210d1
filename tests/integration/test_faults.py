#!/usr/bin/env python3
"""Fault injection: crashes, dead parents, cut links, a vanishing database
and hostile frames, against real daemons (heartbeat 1 s, timeout 3 s).

        CAS  (top, upstream = a file alternating between two catalogs that
         |    share no update id, so every round is a delta of ~2 x ENTRIES
        P01   changes: a large stream and a long apply)

  1. crash:    P01 SIGKILLed at spread-out delays after CAS commits a new
               version, TRIALS times (kills land in the stream, in the apply
               and after it). While dead its visible catalog must be CAS's
               old or new version with that version's digest; after restart
               `verify --json` recomputes the digest from the rows and must
               equal the stored one and CAS's catalog_versions row; then it
               converges.
  2. parent:   CAS SIGKILLed mid-stream and restarted: P01 stays up, shows
               a clear error, converges.
  3. link:     P01 dials CAS through a TCP relay in this process; the relay
               is cut mid-pull and while idle (accepting and dropping, so
               the reconnect attempts are counted): CAS shows P01's link
               down/stale, P01 retries with backoff, converges once restored.
  4. database: P01's database goes away mid-sync (sessions terminated,
               ALLOW_CONNECTIONS false for a few seconds): P01 stays up, CAS
               shows it failed with last_error, it retries and converges.
  5. wire:     truncated frame then close; a Frame with only an unknown
               field; Batch before Hello; PullDone and Batch after Hello; a
               Hello naming another site than the certificate: each gets an
               Error frame or a close plus a log line at CAS; P01 stays
               linked and takes the next version.

Environment: SS_FAULT_TRIALS (default 20), SS_FAULT_ENTRIES (default
20000), SS_FAULT_RESULTS=FILE appends a JSON summary of the measured
numbers (for RELIABILITY.md).
"""

import json
import os
import random
import re
import select
import shutil
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (FRAME_ERROR, FRAME_HELLO, FRAME_PULL_DONE, NotYet,  # noqa: E402
                     PeerResult, PortLock, TestFailure, check, frame,
                     hello_frame, log, pb_field_bytes, pb_field_varint,
                     read_frames, send_quietly, tls_connect, wait_for)

TRIALS = int(os.environ.get("SS_FAULT_TRIALS", "20"))
ENTRIES = int(os.environ.get("SS_FAULT_ENTRIES", "20000"))
SYNC_TIMEOUT = 600       # one round at CAS / one pull at P01; generous for ASan
PEER_TIMEOUT = 15
FRAME_BATCH = 5
KILLS_PER_ROUND = 4

RESULTS = {"trials": [], "entries": ENTRIES}


# ---------------------------------------------------------------------------
# Helpers


class Upstream:
    """Two catalogs with disjoint update ids; each round swaps them in."""

    def __init__(self, h):
        self.dir = h.path("upstream")
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "catalog.xml")
        self.alt = []
        for seed in (11, 29):
            p = os.path.join(self.dir, "seed%d.xml" % seed)
            h.gen_catalog(p, ENTRIES, 1, seed)
            self.alt.append(p)
        self.n = 0

    def next(self):
        src = self.alt[self.n % 2]
        self.n += 1
        tmp = self.path + ".tmp"
        shutil.copyfile(src, tmp)
        os.replace(tmp, self.path)


def cas_versions(cas):
    """{version: digest hex} of every version CAS has made."""
    out = cas.sql("SELECT version, encode(digest,'hex') FROM catalog_versions")
    res = {}
    for line in out.splitlines():
        v, d = line.split("|")
        res[int(v)] = d
    return res


def new_round(cas, up):
    """Swap the upstream catalog and make CAS commit the next version.
    Return (version, seconds CAS took)."""
    before = cas.catalog_state()[0]
    up.next()
    t0 = time.monotonic()
    cas.cli_ok("sync", "--yes")
    wait_for(lambda: cas.catalog_state()[0] > before, SYNC_TIMEOUT,
             "CAS to commit version %d" % (before + 1), interval=0.05)
    v = cas.catalog_state()[0]
    check(v == before + 1, "CAS jumped from %d to %d" % (before, v))
    return v, time.monotonic() - t0


def verify_json(site):
    rc, out, err = site.cli("verify", "--json", timeout=120)
    check(out.strip().startswith("{"), "%s: verify --json printed no JSON "
          "(exit %d): %s%s" % (site.code, rc, out, err))
    return rc, json.loads(out)


def check_consistent(site, cas, allowed, what):
    """The site's stored state is one of CAS's versions in `allowed`, with
    CAS's digest for it, and its rows add up to that digest."""
    rc, v = verify_json(site)
    ver, dig = v.get("version"), v.get("digest")
    check(v.get("recomputed_digest") == dig,
          "%s: %s: digest recomputed from the rows %s differs from the stored "
          "%s (version %s): a partial apply is visible" % (
              what, site.code, v.get("recomputed_digest"), dig, ver))
    check(v.get("rows") == v.get("entries"),
          "%s: %s holds %s rows but its catalog_state says %s" % (
              what, site.code, v.get("rows"), v.get("entries")))
    check(ver in allowed, "%s: %s is at version %s, expected one of %s" % (
        what, site.code, ver, sorted(allowed)))
    cas_d = cas_versions(cas).get(ver)
    check(cas_d == dig, "%s: %s holds version %s with digest %s, CAS made it "
          "with %s" % (what, site.code, ver, dig, cas_d))
    return ver


def status_rows(cas):
    return {r.get("site"): r for r in cas.status_json().get("sites", [])}


def wait_link(cas, code, states, timeout, what):
    def seen():
        r = status_rows(cas).get(code)
        if r is None:
            raise NotYet("no %s row" % code)
        if r.get("link") in states or r.get("state") in states:
            return r
        raise NotYet("%s row: link %r state %r" % (code, r.get("link"), r.get("state")))
    return wait_for(seen, timeout, what, interval=0.1)


def converge(h, cas, p01, what):
    t0 = time.monotonic()
    st = h.wait_converged(cas, [p01], SYNC_TIMEOUT, what)
    return st, time.monotonic() - t0


def alive(site):
    check(site.running(), "%s died; log:\n%s" % (site.code, site.log_tail(80)))


# ---------------------------------------------------------------------------
# A TCP relay between P01 and CAS, cut and restored on demand


class Relay:
    """Forward 127.0.0.1:port to the target. While cut, accepted
    connections are closed at once (and counted), existing ones dropped."""

    def __init__(self, target_port):
        self.lock = PortLock()
        self.port = self.lock.port
        self.target = ("127.0.0.1", target_port)
        self.cut = False
        self.accepts = []           # (monotonic time, forwarded?)
        self.pairs = []
        self.mu = threading.Lock()
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", self.port))
        self.lock.release()
        self.srv.listen(64)
        self.stop_flag = False
        self.t = threading.Thread(target=self._accept_loop, daemon=True)
        self.t.start()

    def _accept_loop(self):
        while not self.stop_flag:
            r, _, _ = select.select([self.srv], [], [], 0.2)
            if not r:
                continue
            try:
                c, _ = self.srv.accept()
            except OSError:
                continue
            with self.mu:
                cut = self.cut
                self.accepts.append((time.monotonic(), not cut))
            if cut:
                c.close()
                continue
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            with self.mu:
                self.pairs.append((c, u))
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()

    def _pump(self, a, b):
        socks = [a, b]
        try:
            while not self.stop_flag:
                r, _, _ = select.select(socks, [], [], 0.2)
                for s in r:
                    data = s.recv(262144)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            pass
        finally:
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass

    def set_cut(self, cut):
        with self.mu:
            self.cut = cut
            pairs, self.pairs = (self.pairs, []) if cut else (self.pairs, self.pairs)
        if cut:
            for a, b in pairs:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def attempts_since(self, t0):
        with self.mu:
            return [t for t, _ in self.accepts if t >= t0]

    def close(self):
        self.stop_flag = True
        self.set_cut(True)
        self.srv.close()


# ---------------------------------------------------------------------------
# 1. The child crashes mid-pull


def phase_of(text):
    """Where a kill landed, from the child's log since its last start."""
    if "Writing the catalog into the site database" in text or "-> applying" in text:
        return "apply"
    if "Starting sync" in text or "-> pulling" in text:
        return "stream"
    return "before pull"


def crash_trials(h, cas, p01, up):
    """P01 SIGKILLed at delays spread over a pull's duration.

    A CAS round costs a full upstream parse, so each new version serves
    KILLS_PER_ROUND kills: the first lands in the pull CAS's SyncRequest
    starts, the next ones in the pull P01 starts again from its Hello after
    each restart. Every kill is one trial."""
    # Calibrate: how long does one round take to reach P01 untouched?
    v, cas_s = new_round(cas, up)
    t_commit = time.monotonic()
    converge(h, cas, p01, "calibration round at P01")
    pull_s = time.monotonic() - t_commit
    log("crash: calibration: CAS made v%d in %.1fs, P01 followed in %.1fs"
        % (v, cas_s, pull_s))
    RESULTS["calibration_pull_seconds"] = round(pull_s, 2)

    seed = int(os.environ.get("SS_FAULT_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    RESULTS["seed"] = seed
    order = list(range(TRIALS))
    rng.shuffle(order)          # delays spread over the range, in random order
    phases = {}
    i = 0
    while i < TRIALS:
        old = p01.catalog_state()[0]
        # The log since the last (re)start tells where the kill landed.
        mark = p01.log_mark()
        v, _ = new_round(cas, up)
        check(v == old + 1, "round: P01 at %d, CAS made %d" % (old, v))
        for k in range(KILLS_PER_ROUND):
            if i >= TRIALS:
                break
            if k == 0:
                # The first kill of a version aims at the stream, which a
                # restart resumes and then applies at once.
                delay = rng.uniform(0.1, min(2.0, pull_s / 3))
            else:
                # 0 .. 1.1 x the estimated pull time, jittered: kills land
                # in the stream, in the apply and just after the commit.
                delay = pull_s * 1.1 * (order[i] + rng.random()) / TRIALS
            time.sleep(delay)
            phase = phase_of(p01.log_since(mark))
            p01.kill()
            # Dead: the visible catalog is H or V, with CAS's digest for it.
            st = p01.catalog_state()
            check(st[0] in (old, v), "trial %d: killed P01 holds version %d "
                  "(old %d, new %d)" % (i, st[0], old, v))
            check(cas_versions(cas).get(st[0]) == st[1],
                  "trial %d: killed P01 holds version %d with digest %s, CAS's is %s"
                  % (i, st[0], st[1], cas_versions(cas).get(st[0])))
            if st[0] == v:
                phase = "after commit"
                # The machine is faster than the estimate: aim earlier.
                pull_s = max(0.5, min(pull_s, delay) * 0.9)
            phases[phase] = phases.get(phase, 0) + 1
            t0 = time.monotonic()
            mark = p01.log_mark()
            p01.start()
            check_consistent(p01, cas, (old, v), "trial %d after restart" % i)
            RESULTS["trials"].append({"delay": round(delay, 2), "phase": phase,
                                      "held_new": st[0] == v})
            log("crash trial %d/%d: kill at +%.2fs (%s), P01 held v%d (old %d new %d), "
                "restarted in %.1fs" % (i + 1, TRIALS, delay, phase, st[0], old, v,
                                        time.monotonic() - t0))
            i += 1
            if st[0] == v:
                break           # this version is in; the next kill needs a new one
        t0 = time.monotonic()
        converge(h, cas, p01, "P01 to converge on v%d after the kills" % v)
        conv = time.monotonic() - t0
        check_consistent(p01, cas, (v,), "v%d after convergence" % v)
        RESULTS.setdefault("crash_converge_s", []).append(round(conv, 2))
        log("crash: P01 converged on v%d %.1fs after the last restart" % (v, conv))
    RESULTS["crash_phases"] = phases
    log("crash: %d trials, phases %r" % (TRIALS, phases))
    check(phases.get("stream", 0) + phases.get("apply", 0) > 0,
          "no kill landed inside a pull: %r" % phases)


# ---------------------------------------------------------------------------
# 2. The parent dies mid-stream


def parent_crash(h, cas, p01, up):
    mark = p01.log_mark()
    old = p01.catalog_state()[0]
    v, _ = new_round(cas, up)

    def pulling():
        text = p01.log_since(mark)
        return "Starting sync" in text
    wait_for(pulling, 60, "P01 to start pulling v%d" % v, interval=0.02)
    # Let some of the stream through, then kill CAS.
    time.sleep(min(0.3, RESULTS.get("calibration_pull_seconds", 1) / 4))
    kmark = p01.log_mark()
    cas.kill()
    t_kill = time.monotonic()
    # P01 notices (heartbeat timeout 3 s at most), stays up, says why.
    def noticed():
        alive(p01)
        text = p01.log_since(kmark)
        m = re.search(r"(?im)^.*(lost connection to parent|connection .*(closed|lost|reset)|"
                      r"sync failed|timed? ?out).*$", text)
        if m is None:
            raise NotYet("nothing in P01's log about the lost parent")
        return m.group(0)
    line = wait_for(noticed, 30, "P01 to log the loss of CAS")
    log("parent: P01 logged %r %.1fs after the kill" % (line.strip()[:160],
                                                         time.monotonic() - t_kill))
    st = p01.catalog_state()
    check(st[0] in (old, v), "P01 at %d after CAS died (old %d, new %d)" % (st[0], old, v))
    time.sleep(2)       # a few reconnect attempts against a dead port
    alive(p01)
    t0 = time.monotonic()
    cas.start()
    _, conv = converge(h, cas, p01, "P01 to converge after CAS restarted")
    conv = time.monotonic() - t0
    check_consistent(p01, cas, (v,), "after the parent crash")
    RESULTS["parent_crash_converge_s"] = round(conv, 2)
    log("parent: P01 converged %.1fs after CAS restarted" % conv)


# ---------------------------------------------------------------------------
# 3. The link is cut and restored


def link_cut(h, cas, p01, relay, up):
    # a) while idle
    wait_link(cas, "P01", ("active",), 30, "P01 link active before the cut")
    t_cut = time.monotonic()
    relay.set_cut(True)
    row = wait_link(cas, "P01", ("down", "disconnected", "stale"), 30,
                    "CAS status to show P01's link down/stale after an idle cut")
    seen_down = time.monotonic() - t_cut
    log("link: idle cut seen at CAS after %.1fs (link %r, state %r)"
        % (seen_down, row.get("link"), row.get("state")))
    time.sleep(8)
    attempts = relay.attempts_since(t_cut)
    gaps = [b - a for a, b in zip(attempts, attempts[1:])]
    log("link: %d reconnect attempts during %.0fs of cut, gaps %s"
        % (len(attempts), time.monotonic() - t_cut, ["%.2f" % g for g in gaps]))
    check(len(attempts) >= 2, "P01 tried to reconnect %d times in 8+ s" % len(attempts))
    # Backoff: reconnect_max is 2 s; hammering would be dozens per second.
    span = time.monotonic() - t_cut
    check(len(attempts) <= span / 0.25, "P01 reconnected %d times in %.1fs: no backoff"
          % (len(attempts), span))
    alive(p01)
    t0 = time.monotonic()
    relay.set_cut(False)
    wait_link(cas, "P01", ("active",), 30, "P01 link active after the idle cut")
    RESULTS["link_idle"] = {"seen_down_s": round(seen_down, 2), "attempts": len(attempts),
                            "max_gap_s": round(max(gaps), 2) if gaps else None,
                            "relink_s": round(time.monotonic() - t0, 2)}
    log("link: P01 relinked %.1fs after restore" % (time.monotonic() - t0))

    # b) mid-pull
    mark = p01.log_mark()
    old = p01.catalog_state()[0]
    v, _ = new_round(cas, up)
    wait_for(lambda: "Starting sync" in p01.log_since(mark), 60,
             "P01 to start pulling v%d" % v, interval=0.02)
    time.sleep(min(0.3, RESULTS.get("calibration_pull_seconds", 1) / 4))
    relay.set_cut(True)
    t_cut = time.monotonic()
    mid_state = p01.catalog_state()[0]
    row = wait_link(cas, "P01", ("down", "disconnected", "stale"), 30,
                    "CAS status to show P01's link down/stale after a mid-pull cut")
    time.sleep(4)
    alive(p01)
    st = p01.catalog_state()
    check(st[0] in (old, v), "P01 at %d during the cut (old %d new %d)" % (st[0], old, v))
    cut_done = st[0] == v
    t0 = time.monotonic()
    relay.set_cut(False)
    _, conv = converge(h, cas, p01, "P01 to converge after the mid-pull cut")
    conv = time.monotonic() - t0
    check_consistent(p01, cas, (v,), "after the mid-pull cut")
    RESULTS["link_midpull"] = {"seen_down_s": round(time.monotonic() - t_cut, 2),
                               "finished_before_cut": cut_done or mid_state == v,
                               "converge_s": round(conv, 2)}
    log("link: mid-pull cut (pull %s before the cut), converged %.1fs after restore"
        % ("had finished" if cut_done else "unfinished", conv))


# ---------------------------------------------------------------------------
# 4. The child's database goes away


def db_away(h, cas, p01, up, hold=4):
    mark = p01.log_mark()
    old = p01.catalog_state()[0]
    v, _ = new_round(cas, up)
    wait_for(lambda: "Starting sync" in p01.log_since(mark), 60,
             "P01 to start pulling v%d" % v, interval=0.02)
    pg = h.pg
    pg.query("postgres", "ALTER DATABASE %s ALLOW_CONNECTIONS false" % p01.dbname)
    t_off = time.monotonic()
    try:
        n = pg.query("postgres", "SELECT count(pg_terminate_backend(pid)) FROM "
                     "pg_stat_activity WHERE datname = '%s'" % p01.dbname)
        log("db: terminated %s sessions of %s, connections refused" % (n, p01.dbname))

        def failed_at_top():
            alive(p01)
            r = status_rows(cas).get("P01") or {}
            if r.get("state") == "failed" and r.get("last_error"):
                return r
            raise NotYet("P01 row at CAS: state %r last_error %r"
                         % (r.get("state"), r.get("last_error")))
        row = wait_for(failed_at_top, 60, "CAS status to show P01 failed with an error",
                       interval=0.1)
        log("db: CAS shows P01 %s: %r (code %r, next_retry %r) after %.1fs"
            % (row.get("state"), row.get("last_error"), row.get("last_error_code"),
               row.get("next_retry"), time.monotonic() - t_off))
        RESULTS["db_error"] = row.get("last_error")
        left = hold - (time.monotonic() - t_off)
        if left > 0:
            time.sleep(left)
        alive(p01)
    finally:
        pg.query("postgres", "ALTER DATABASE %s ALLOW_CONNECTIONS true" % p01.dbname)
    t0 = time.monotonic()
    _, conv = converge(h, cas, p01, "P01 to converge once its database is back")
    conv = time.monotonic() - t0
    check_consistent(p01, cas, (v,), "after the database outage")

    def recovered():
        r = status_rows(cas).get("P01") or {}
        if r.get("state") == "succeeded" and r.get("catalog_version") == v:
            return r
        raise NotYet("P01 row: %r %r" % (r.get("state"), r.get("catalog_version")))
    wait_for(recovered, 60, "CAS status to show P01 succeeded at v%d" % v)
    check(old != v, "no new version")
    RESULTS["db_converge_s"] = round(conv, 2)
    log("db: P01 converged %.1fs after connections were allowed again" % conv)


# ---------------------------------------------------------------------------
# 5. Bad input over the wire


def raw_peer(cas, code, sends, hello_first=False, half_close=False):
    certs = cas.h.certs
    res = PeerResult()
    s, err = tls_connect(cas.port, certs.ca, certs.cert(code), certs.key(code))
    if s is None:
        res.closed, res.how = True, err
        return res
    try:
        if hello_first:
            e = send_quietly(s, hello_frame(code, 0))
            read_frames(s, PEER_TIMEOUT, stop_after=FRAME_HELLO, result=res)
            check(not e and res.has(FRAME_HELLO),
                  "%s got no Hello back: %r %s" % (code, res, e or ""))
        for data in sends:
            e = send_quietly(s, data)
            if e:
                res.closed, res.how = True, e
                break
        if half_close and not res.closed:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                res.closed, res.how = True, "shutdown: %s" % e
        if not res.closed:
            read_frames(s, PEER_TIMEOUT, result=res)
    finally:
        s.close()
    return res


def expect_error_or_close(res, what):
    check(res.closed or res.has(FRAME_ERROR),
          "%s: neither an Error frame nor a close: %r" % (what, res))
    kinds = [k for k in res.kinds() if k not in ("Hello", "SyncRequest", "Ping", "Pong")]
    check(kinds in ([], ["Error"]), "%s: unexpected frames %r" % (what, res))
    log("wire: %s: %s%s" % (what, res.how,
                            ", Error %r" % (res.errors(),) if res.errors() else ""))


def expect_logged(cas, mark, what, pattern):
    rx = re.compile(pattern)

    def logged():
        text = cas.log_since(mark)
        m = rx.search(text)
        if m is None:
            raise NotYet("no line matching %r" % pattern)
        line_start = text.rfind("\n", 0, m.start()) + 1
        line_end = text.find("\n", m.end())
        return text[line_start:line_end if line_end != -1 else None]
    line = wait_for(logged, 15, "CAS to log why it dropped %s" % what)
    log("wire: %s: CAS logged %r" % (what, line.strip()[:200]))


def bad_wire(h, cas, p01, up):
    h.certs.site("P02")
    cas.cli_ok("child", "add", "P02")
    # The peer's code must appear with a reason on one warning/error line;
    # a peer that hung up mid-frame must at least be logged as gone.
    why = r"(?im)^(?!.*\bis stale\b).*\b(warning|error)\b.*P02.*(malformed|undecodable|unexpected|"\
          r"expected|invalid|trunc|protocol|refus|mismatch|claims|unknown).*$"
    why_closed = r"(?im)^.*P02.*(closed|lost|trunc|partial|incomplete|reset).*$"
    hello = hello_frame("P02", 0)
    batch = frame(FRAME_BATCH, pb_field_bytes(1, "00000000-0000-4000-8000-000000000000")
                  + pb_field_bytes(2, pb_field_varint(1, 1) + pb_field_bytes(2, b"\x0a\x00")))
    pull_done = frame(FRAME_PULL_DONE, pb_field_varint(1, 99)
                      + pb_field_bytes(2, b"\x00" * 32) + pb_field_varint(3, 1))
    unknown = pb_field_bytes(99, b"\x08\x01")
    unknown_frame = struct.pack(">I", len(unknown)) + unknown
    cases = [
        ("truncated frame then close", [hello, struct.pack(">I", 200) + b"\x0a" * 20],
         False, True),
        ("truncated frame before Hello then close", [struct.pack(">I", 100) + hello[4:20]],
         False, True),
        ("Frame with only an unknown field", [unknown_frame], True, False),
        ("unknown field before Hello", [unknown_frame], False, False),
        ("Batch before Hello", [batch], False, False),
        ("Batch after Hello", [batch], True, False),
        ("PullDone after Hello", [pull_done], True, False),
        ("Hello claiming P01 with P02's certificate", [hello_frame("P01", 0)], False, False),
    ]
    for what, sends, hello_first, half in cases:
        mark = cas.log_mark()
        res = raw_peer(cas, "P02", sends, hello_first=hello_first, half_close=half)
        if half:
            # The peer closed first; what matters is that CAS logged it.
            check(not res.has(FRAME_HELLO) or hello_first,
                  "%s: unexpected Hello %r" % (what, res))
            log("wire: %s: %s" % (what, res.how))
        else:
            expect_error_or_close(res, what)
        expect_logged(cas, mark, what, why_closed if half else why)
        alive(cas)
        alive(p01)

    wait_link(cas, "P01", ("active",), 30, "P01 link still active after the bad peers")
    v, _ = new_round(cas, up)
    _, conv = converge(h, cas, p01, "P01 to take v%d after the bad peers" % v)
    check_consistent(p01, cas, (v,), "after the bad peers")
    log("wire: P01 took v%d %.1fs after CAS made it" % (v, conv))


# ---------------------------------------------------------------------------


def test(h):
    t_start = time.monotonic()
    up = Upstream(h)
    up.next()
    # Every round replaces the whole catalog: past the removal guard
    # ([upstream] max_removal_percent), which this test does not exercise.
    cas = h.add_site("CAS", upstream="file://" + up.path,
                     extra={"upstream": {"max_removal_percent": "100"}})
    cas.start()
    relay = Relay(cas.port)
    try:
        # SS_FAULT_DIRECT=1: P01 dials CAS directly (no relay; the link
        # step is skipped), to tell relay effects from daemon behaviour.
        direct = os.environ.get("SS_FAULT_DIRECT") == "1"
        p01 = h.add_site("P01", parent=cas, listen=False,
                         extra={} if direct else
                         {"parent": {"address": "127.0.0.1:%d" % relay.port}})
        cas.cli_ok("child", "add", "P01")
        p01.start()
        cas.cli_ok("sync", "--yes")
        wait_for(lambda: cas.catalog_state()[0] == 1, SYNC_TIMEOUT, "CAS v1")
        _, conv = converge(h, cas, p01, "v1 at P01")
        log("setup: P01 holds v1 (%d entries) after %.1fs" % (cas.catalog_state()[2], conv))
        RESULTS["first_sync_s"] = round(conv, 2)

        steps = os.environ.get("SS_FAULT_STEPS", "wire,link,parent,crash,db").split(",")
        failures = []
        for step in steps:
            if direct and step == "link":
                log("==== link: skipped (SS_FAULT_DIRECT=1)")
                continue
            t0 = time.monotonic()
            log("==== %s" % step)
            fn = {"crash": lambda: crash_trials(h, cas, p01, up),
                  "parent": lambda: parent_crash(h, cas, p01, up),
                  "link": lambda: link_cut(h, cas, p01, relay, up),
                  "db": lambda: db_away(h, cas, p01, up),
                  "wire": lambda: bad_wire(h, cas, p01, up)}[step]
            try:
                fn()
                RESULTS.setdefault("passed", []).append(step)
            except TestFailure as e:
                # Go on with the other faults on a fresh pair of daemons.
                log("FAILED step %s: %s" % (step, e))
                failures.append("%s: %s" % (step, e))
                relay.set_cut(False)
                for s in (cas, p01):
                    if not s.running():
                        if s.proc is not None:
                            failures.append("%s: %s exited with status %s" % (
                                step, s.code, s.proc.returncode))
                        s.kill()
                        s.start()
                try:
                    converge(h, cas, p01, "P01 to converge before the next step")
                except TestFailure as e2:
                    failures.append("%s (recovery): %s" % (step, e2))
                    break
            RESULTS.setdefault("step_seconds", {})[step] = round(time.monotonic() - t0, 1)
        RESULTS["failed"] = failures
        RESULTS["undecodable_at_p01"] = p01.log_text().count("undecodable frame")
        check(not failures, "; ".join(failures))
        alive(cas)
        alive(p01)
    finally:
        relay.close()
        RESULTS["total_s"] = round(time.monotonic() - t_start, 1)
        out = os.environ.get("SS_FAULT_RESULTS")
        if out:
            with open(out, "a") as f:
                f.write(json.dumps(RESULTS) + "\n")
        log("results: %s" % json.dumps(RESULTS))


if __name__ == "__main__":
    harness.main(test, "faults")
