#!/usr/bin/env python3
"""sitesync benchmarks: every figure as a ratio against a baseline measured
in the same run, median of at least 3 runs (bench/RESULTS.md).

Uses the integration harness (tests/integration/harness.py): a private
PostgreSQL cluster, certificates from deploy/sitesync-certs, real daemons on
loopback. Timings come from the daemons' own log timestamps (ISO, ms):

  top ingest   "Starting sync" ... "[6702] Synced from upstream: version N"
               (CAS's sitesyncd.log, info level)
  child pull   "[6701]"/"Starting sync" ... "Synced with parent X: version N"
  propagation  top's "Synced from upstream: version N" -> the latest
               "Synced with parent ...: version N" over all sites

Figures (see bench/RESULTS.md for the targets):
  1 full pull vs a binary COPY pipe between two databases
  2 delta pull (0.1% changed) vs the full pull
  3 propagation of a 100-entry version through a 13-site tree
  4 fan-out: 250 light children (bench/lightchild) pulling one delta
  5 upstream ingest vs xmllint --stream + COPY; unchanged re-sync
  6 peak RSS (VmHWM) of parent and child during a large full pull
  7 the largest hierarchy: 1 top, 25 mids, 6,250 light leaves (bench/hierarchy.py;
    not in the default set)
  8 WSUS upstream: first sync of N revisions vs curl replaying its requests;
    delta sync after 1% changed (bench/wsus_bench.py; not in the default set)

  bench.py [--quick] [--only 1,2,3,5,6,4,7,8] [--runs N] [--keep]
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRC, "tests", "integration"))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402
from pgcopy import SAME_TOAST, psql_pipe, updates_ddl  # noqa: E402

TS_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (\S+) (\w+): (.*)$")

RESULTS = []        # rows of the final table


def result(fig, name, value, unit, baseline, base_unit, ratio, target, met,
           note=""):
    row = dict(fig=fig, name=name, value=value, unit=unit, baseline=baseline,
               base_unit=base_unit, ratio=ratio, target=target, met=met,
               note=note)
    RESULTS.append(row)
    log("RESULT %s" % format_row(row))
    return row


def fmt_num(v, unit):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if unit == "s":
        return "%.2f s" % v
    if unit == "ms":
        return "%.0f ms" % v
    if unit == "MB":
        return "%.1f MB" % v
    if unit == "MB/s":
        return "%.1f MB/s" % v
    return "%g %s" % (v, unit)


def format_row(r):
    return "%-3s %-40s %14s %16s %8s %10s %s" % (
        r["fig"], r["name"], fmt_num(r["value"], r["unit"]),
        fmt_num(r["baseline"], r["base_unit"]),
        "-" if r["ratio"] is None else "%.3f" % r["ratio"],
        r["target"], {True: "met", False: "NOT MET", None: "-"}[r["met"]])


def print_table(out=sys.stdout):
    out.write("\n%-3s %-40s %14s %16s %8s %10s %s\n" % (
        "fig", "figure", "value", "baseline", "ratio", "target", "met"))
    out.write("-" * 108 + "\n")
    for r in RESULTS:
        out.write(format_row(r) + "\n")
        if r["note"]:
            out.write("      %s\n" % r["note"])
    out.flush()


def md_table():
    lines = ["| fig | figure | value | baseline | ratio | target | met |",
             "|---|---|---|---|---|---|---|"]
    for r in RESULTS:
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            r["fig"], r["name"], fmt_num(r["value"], r["unit"]),
            fmt_num(r["baseline"], r["base_unit"]),
            "-" if r["ratio"] is None else "%.3f" % r["ratio"], r["target"],
            {True: "met", False: "**not met**", None: "-"}[r["met"]]))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# Log parsing


def parse_ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=timezone.utc).timestamp()


def log_events(site, mark=0):
    """[(unix time, level, message)] from a site's log after byte `mark`."""
    out = []
    for line in site.log_since(mark).splitlines():
        m = TS_RE.match(line)
        if m:
            out.append((parse_ts(m.group(1)), m.group(3), m.group(4)))
    return out


def find_event(site, mark, pattern, last=False):
    rx = re.compile(pattern)
    hit = None
    for t, _, msg in log_events(site, mark):
        if rx.search(msg):
            if not last:
                return t
            hit = t
    return hit


def wait_event(site, mark, pattern, timeout, what):
    return wait_for(lambda: find_event(site, mark, pattern), timeout, what,
                    interval=0.05)


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def reset_hwm(pid):
    """Reset VmHWM to the current RSS (Linux clear_refs value 5)."""
    try:
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class HwmSampler:
    """VmHWM is the kernel's own peak; sampling only covers the case where
    clear_refs is not writable (then VmRSS is polled)."""

    def __init__(self, pid):
        self.pid = pid
        self.exact = reset_hwm(pid)
        self.peak = 0

    def sample(self):
        try:
            with open("/proc/%d/status" % self.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.peak = max(self.peak, int(line.split()[1]))
        except OSError:
            pass

    def peak_mb(self):
        if self.exact:
            return vm_hwm_kb(self.pid) / 1024.0
        return self.peak / 1024.0


class Perf:
    """perf record of one daemon while a step runs (--perf DIR)."""

    def __init__(self, args, pid, name):
        self.p = None
        if not args.perf:
            return
        os.makedirs(args.perf, exist_ok=True)
        self.out = os.path.join(args.perf, name + ".data")
        self.p = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-o",
                                   self.out, "-p", str(pid)],
                                  stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def stop(self):
        if self.p is None:
            return
        self.p.send_signal(2)
        try:
            self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.p = None


# ---------------------------------------------------------------------------
# Catalogs


def gen_catalog(out, entries, rnd=1, seed=7):
    if os.path.exists(out):
        return out
    t0 = time.monotonic()
    subprocess.run([sys.executable, os.path.join(SRC, "tests", "gen_catalog.py"),
                    "--entries", str(entries), "--round", str(rnd), "--seed",
                    str(seed), "--out", out + ".tmp"], check=True,
                   stdin=subprocess.DEVNULL)
    os.replace(out + ".tmp", out)
    log("generated %s (%d entries, %.0f MB) in %.1fs" % (
        os.path.basename(out), entries, os.path.getsize(out) / 1e6,
        time.monotonic() - t0))
    return out


def retitle(src, dst, every, tag, offset=0):
    """Copy a generated catalog, changing the title of every `every`-th
    package (one package per line in gen_catalog.py output): a realistic
    metadata edit that gives those entries revision+1 at the top."""
    n = changed = 0
    with open(src, "rb") as fi, open(dst + ".tmp", "wb") as fo:
        for line in fi:
            if line.startswith(b"<smc:SoftwareDistributionPackage>"):
                if (n - offset) % every == 0 and n >= offset:
                    line = line.replace(b"</sdp:Title>",
                                        (" (%s)</sdp:Title>" % tag).encode(), 1)
                    changed += 1
                n += 1
            fo.write(line)
    os.replace(dst + ".tmp", dst)
    return changed


# ---------------------------------------------------------------------------
# Sites


class Bench:
    def __init__(self, h, args):
        self.h = h
        self.args = args
        self.catdir = args.catalogs
        os.makedirs(self.catdir, exist_ok=True)
        self.upfile = h.path("upstream.xml")
        self.n = 0

    def site(self, code, parent=None, listen=True, upstream=False, extra=None):
        # Long heartbeats keep status traffic out of the timings; a child
        # still pings every min(heartbeat_seconds, poll_seconds) = 60 s, and
        # the parent sends whole frames, so a Pong never splits one.
        # Pushes (SyncRequest) drive every figure.
        ex = {"log": {"level": "debug"},
              "replication": {"heartbeat_seconds": "600",
                              "heartbeat_timeout": "1800"}}
        if self.args.apply_while_receiving:
            ex["replication"]["apply_while_receiving"] = "true"
        if self.args.no_serve_while_producing:
            ex["replication"]["serve_while_producing"] = "false"
        for k, v in (extra or {}).items():
            ex.setdefault(k, {}).update(v)
        s = self.h.add_site(code, parent=parent, listen=listen,
                            upstream=("file://" + self.upfile) if upstream else None,
                            extra=ex)
        return s

    def set_upstream(self, path):
        """Point the upstream file at `path` (a hard link or copy)."""
        tmp = self.upfile + ".new"
        if os.path.exists(tmp):
            os.unlink(tmp)
        try:
            os.link(path, tmp)
        except OSError:
            subprocess.run(["cp", path, tmp], check=True)
        os.replace(tmp, self.upfile)

    def top_sync(self, top, timeout=1800, full=False):
        """Run `sitesync sync` at the top; return (seconds from the log's
        "Starting sync" to "Synced from upstream"/"unchanged", version)."""
        mark = top.log_mark()
        args = ["sync", "--yes"] + (["--full"] if full else [])
        top.cli_ok(*args)

        def done():
            for t, _, msg in log_events(top, mark):
                m = re.search(r"Synced from upstream: version (\d+)", msg)
                if m:
                    return t, int(m.group(1)), False
                if "Catalog unchanged" in msg:
                    return t, None, True
                if "[6703]" in msg:
                    raise harness.TestFailure("top sync failed: " + msg)
            return None
        t_end, ver, unchanged = wait_for(done, timeout, "top sync", interval=0.05)
        t_start = find_event(top, mark, r"Starting sync|\[6701\]")
        check(t_start is not None, "no start line in the top's log")
        return t_end - t_start, ver, unchanged

    def pull_time(self, child, mark, version, timeout=1800):
        """Seconds from the child's sync start to "Synced with parent ...:
        version N" in its log."""
        t_end = wait_event(child, mark, r"Synced with parent \S+: version %d\b" % version,
                           timeout, "%s to pull version %d" % (child.code, version))
        evs = [t for t, _, m in log_events(child, mark)
               if re.search(r"\[6701\]|Starting sync|\[6704\]", m) and t <= t_end]
        check(evs, "no sync start in %s's log" % child.code)
        # The last start before the end is this pull's (earlier ones failed).
        return t_end - evs[-1]


def settle(h):
    """Start a timed run from the same state: PostgreSQL's dirty buffers and
    the kernel's dirty pages written out. One figure writes 1-2 GB; left in
    the page cache, their writeback lands inside whatever is timed next."""
    h.pg.query("postgres", "CHECKPOINT", timeout=600)
    os.sync()


def make_baseline_db(h, src_db, name):
    """An empty database holding the `updates` table exactly as the site
    schema defines it (same columns, primary key)."""
    h.pg.query("postgres", 'DROP DATABASE IF EXISTS "%s"' % name)
    h.pg.create_db(name)
    subprocess.run(h.pg.psql_argv(name), input=updates_ddl(h, src_db), text=True,
                   check=True, stdout=subprocess.DEVNULL)


def copy_baseline(h, src_db, n_runs):
    """Median seconds of the binary COPY pipe of all `updates` rows into a
    fresh table in another database."""
    times = []
    for i in range(n_runs):
        make_baseline_db(h, src_db, "baseline_copy")
        settle(h)
        times.append(psql_pipe(h.pg, src_db, h.pg, "baseline_copy",
                               "SELECT * FROM updates", "updates"))
        log("baseline COPY pipe run %d: %.2fs" % (i + 1, times[-1]))
    return statistics.median(times), times


# ---------------------------------------------------------------------------
# Figures 1, 2, 5: one top, several children pulling in turn


def fig_5(b):
    fig_1_2_5(b, ingest_only=True)


def fig_1_2_5(b, ingest_only=False):
    h, a = b.h, b.args
    n = a.entries
    runs = a.runs
    cat1 = gen_catalog(os.path.join(b.catdir, "r1_%d.xml" % n), n)

    # Figure 5: ingest at `runs` independent top sites (fresh databases).
    b.set_upstream(cat1)
    ingest, resync = [], []
    tops = []
    for i in range(a.ingest_runs or runs):
        code = "CA%d" % i if i else "CAS"
        t = b.site(code, upstream=True, listen=(i == 0))
        t.start()
        settle(h)
        prof = Perf(a, t.proc.pid, "ingest_%s" % code) if i == 0 else None
        dt, ver, _ = b.top_sync(t)
        if prof:
            prof.stop()
        check(ver == 1, "first sync made version %r" % ver)
        ingest.append(dt)
        log("fig 5: ingest %d entries at %s: %.2fs" % (n, code, dt))
        if not a.no_resync:
            dt2, ver2, unchanged = b.top_sync(t)
            check(unchanged or ver2 is None, "unchanged re-sync made a new version")
            resync.append(dt2)
            log("fig 5: unchanged re-sync at %s: %.3fs" % (code, dt2))
        tops.append(t)
        if i:
            t.stop()
    top = tops[0]
    entries = top.catalog_state()[2]
    # Three fresh 200,000-entry catalogs leave autovacuum three first
    # vacuums of ~1 GB to do; run them now rather than under the pulls.
    t0 = time.monotonic()
    for t in tops:
        h.pg.query(t.dbname, "VACUUM (ANALYZE)", timeout=600)
    log("vacuumed the %d ingest databases in %.1fs" % (len(tops), time.monotonic() - t0))

    # Baseline 5: xmllint --stream parse + COPY of the resulting rows.
    xml_t, copy_in_t = [], []
    rows = h.path("rows.bin")
    subprocess.run(h.pg.psql_argv(top.dbname) + [
        "-c", "COPY (SELECT * FROM updates) TO STDOUT (FORMAT binary)"],
        stdout=open(rows, "wb"), check=True)
    for i in range(runs):
        settle(h)
        t0 = time.monotonic()
        subprocess.run(["xmllint", "--stream", "--noout", cat1], check=True)
        xml_t.append(time.monotonic() - t0)
        make_baseline_db(h, top.dbname, "baseline_ingest")
        settle(h)
        t0 = time.monotonic()
        with open(rows, "rb") as f:
            subprocess.run(h.pg.psql_argv("baseline_ingest") + SAME_TOAST + [
                "-c", "COPY updates FROM STDIN (FORMAT binary)"], stdin=f,
                check=True, stdout=subprocess.DEVNULL)
        copy_in_t.append(time.monotonic() - t0)
        log("baseline 5 run %d: xmllint %.2fs + COPY %.2fs" % (
            i + 1, xml_t[-1], copy_in_t[-1]))
    base5 = statistics.median(xml_t) + statistics.median(copy_in_t)
    ing = statistics.median(ingest)
    result("5", "ingest %d entries (file://)" % n, ing, "s", base5, "s",
           ing / base5, "<= 2.0", ing / base5 <= 2.0,
           "runs %s; baseline xmllint %.2fs + COPY %.2fs; %d entries selected"
           % (["%.2f" % x for x in ingest], statistics.median(xml_t),
              statistics.median(copy_in_t), entries))
    rs = statistics.median(resync) if resync else None
    if rs is not None:
        result("5", "unchanged re-sync vs first sync", rs, "s", ing, "s",
               rs / ing, "<= 0.10", rs / ing <= 0.10,
               "runs %s" % ["%.3f" % x for x in resync])
    if ingest_only:
        return top

    # Figure 1: full pull, `runs` fresh children one after the other.
    base1, base_runs = copy_baseline(h, top.dbname, runs)
    top.cli_ok("child", "add", "P01")
    p01 = b.site("P01", parent=top, listen=False)
    pulls = []
    kids = []
    for i in range(runs):
        code = "F%02d" % i
        top.cli_ok("child", "add", code)
        c = b.site(code, parent=top, listen=False)
        settle(h)
        mark = c.log_mark()
        c.start()
        profs = [Perf(a, c.proc.pid, "fullpull_child"),
                 Perf(a, top.proc.pid, "fullpull_parent")] if i == 1 else []
        dt = b.pull_time(c, mark, 1)
        for pr in profs:
            pr.stop()
        check(c.catalog_state() == top.catalog_state(), "%s state differs" % code)
        pulls.append(dt)
        log("fig 1: full pull at %s: %.2fs" % (code, dt))
        c.stop()
        kids.append(c)
    # The headline is the cold pull: the first child's, which also has the
    # parent produce the spool file from its database. The warm pulls that
    # follow are served from that file; their median stands beside it.
    cold = pulls[0]
    full = statistics.median(pulls[1:]) if len(pulls) > 1 else cold
    note = ("pulls %s (the first also produces the spool file); COPY pipe %s"
            % (["%.2f" % x for x in pulls], ["%.2f" % x for x in base_runs]))
    result("1", "full pull %d entries, cold" % entries, cold, "s", base1, "s",
           cold / base1, "<= 1.1", cold / base1 <= 1.1, note)
    result("1w", "full pull %d entries, warm (spool kept)" % entries, full, "s",
           base1, "s", full / base1, "<= 1.3", full / base1 <= 1.3)

    # Figure 2: delta pull of 0.1% changed entries. P01 holds version 1,
    # then each round the top commits a 0.1% change and P01 pulls it.
    mark = p01.log_mark()
    p01.start()
    b.pull_time(p01, mark, 1)
    deltas = []
    # Each round retitles 0.1% of the entries of the previous round's file.
    cur = cat1
    for i in range(runs):
        nxt = os.path.join(b.catdir, "r1_%d_delta%d.xml" % (n, i))
        if not os.path.exists(nxt):
            k = retitle(cur, nxt, 1000, "rev %d" % (i + 2), offset=i)
            log("delta catalog %d: %d of %d titles changed (%.2f%%)"
                % (i, k, n, 100.0 * k / n))
        b.set_upstream(nxt)
        settle(h)
        mark = p01.log_mark()
        _, ver, _ = b.top_sync(top)
        dt = b.pull_time(p01, mark, ver)
        deltas.append(dt)
        log("fig 2: delta pull to version %d: %.3fs" % (ver, dt))
        cur = nxt
    d = statistics.median(deltas)
    result("2", "delta pull 0.1%% of %d" % entries, d, "s", full, "s",
           d / full, "<= 0.01", d / full <= 0.01,
           "runs %s (~%d upserts each)" % (["%.3f" % x for x in deltas],
                                         entries // 1000))
    p01.stop()
    b.set_upstream(cat1)
    return top


# ---------------------------------------------------------------------------
# Figure 3: propagation through 13 sites


HOP_PHASES = ("notify", "ask", "transfer", "apply")


def hop_phases(child, parent_commit, mark, ver):
    """One hop from the child's log: the parent's commit -> the child's
    SyncRequest received (notify) -> its PullRequest sent (ask) -> the whole
    stream received, PullDone (transfer: the parent produces and sends the
    spool, the child stores pull.stream) -> committed (apply: stage, merge,
    digest and manifest checks, commit). Seconds, or None if a line is missing."""
    ev = log_events(child, mark)

    def first(rx, after):
        r = re.compile(rx)
        for t, _, m in ev:
            if t >= after and r.search(m):
                return t
        return None
    t_req = first(r"sync request from parent \S+: version %d\b" % ver, parent_commit - 1)
    t_pull = t_req and first(r"parent link: ready -> pulling", t_req)
    t_apply = t_pull and first(r"parent link: pulling -> applying", t_pull)
    t_done = t_apply and first(r"Synced with parent \S+: version %d\b" % ver, t_apply)
    if not t_done:
        return None
    return (t_req - parent_commit, t_pull - t_req, t_apply - t_pull, t_done - t_apply)


def fig_3(b):
    h, a = b.h, b.args
    n = a.tree_entries
    cat = gen_catalog(os.path.join(b.catdir, "r1_%d.xml" % n), n)
    b.set_upstream(cat)
    top = b.site("T00", upstream=True)
    mids = [b.site("M%02d" % i, parent=top) for i in range(3)]
    leaves = [b.site("L%02d" % (3 * i + j), parent=m, listen=False)
              for i, m in enumerate(mids) for j in range(3)]
    sites = [top] + mids + leaves
    top.start()
    for m in mids:
        top.cli_ok("child", "add", m.code)
        m.start()
    for i, m in enumerate(mids):
        for j in range(3):
            m.cli_ok("child", "add", "L%02d" % (3 * i + j))
    for lf in leaves:
        lf.start()
    b.top_sync(top)
    h.wait_converged(top, sites[1:], 600, "13-site tree at version 1")
    log("fig 3: 13 sites hold %d entries" % top.catalog_state()[2])
    times = []
    hops = {}
    cur = cat
    for r in range(a.prop_runs):
        # cumulative: each round changes exactly 100 more titles
        nxt = h.path("tree_r%d.xml" % r)
        k = retitle(cur, nxt, max(1, n // 100), "prop %d" % r, offset=r)
        cur = nxt
        b.set_upstream(nxt)
        marks = {s.code: s.log_mark() for s in sites}
        mark = top.log_mark()
        top.cli_ok("sync", "--yes")
        t_top = wait_event(top, mark, r"Synced from upstream: version (\d+)", 300,
                           "top commit")
        msg = [m for t, _, m in log_events(top, mark)
               if "Synced from upstream" in m][0]
        ver = int(re.search(r"version (\d+)", msg).group(1))
        ends = []
        for s in sites[1:]:
            ends.append(wait_event(s, marks[s.code],
                                   r"Synced with parent \S+: version %d\b" % ver,
                                   300, "%s at version %d" % (s.code, ver)))
        dt = (max(ends) - t_top) * 1000
        times.append(dt)
        # Where the time went, hop by hop: level 1 (mids, from the top's
        # commit) and level 2 (leaves, from their mid's commit).
        commit = dict(zip([s.code for s in sites[1:]], ends))
        commit[top.code] = t_top
        for level, group in ((1, mids), (2, leaves)):
            for s in group:
                ph = hop_phases(s, commit[s.parent.code], marks[s.code], ver)
                if ph:
                    hops.setdefault(level, []).append(ph)
        log("fig 3: version %d (%d entries changed) at all 13 sites %.0f ms "
            "after the top committed it (mid-level %.0f ms)"
            % (ver, k, dt, (max(ends[:3]) - t_top) * 1000))
    med = statistics.median(times)
    hop_note = []
    for level in sorted(hops):
        cols = list(zip(*hops[level]))
        parts = ["%s %.0f" % (n, statistics.median(c) * 1000) for n, c in zip(HOP_PHASES, cols)]
        hop_note.append("level %d hop (median of %d): %s ms" % (level, len(hops[level]),
                                                              ", ".join(parts)))
        log("fig 3: %s" % hop_note[-1])
    for s in sites:
        s.stop()
    # Beside it: PostgreSQL logical replication through the same tree.
    import logical
    lr_med, lr_mid, lr_times = logical.cascade(b, top.dbname, max(1, n // 100), a.prop_runs)
    result("3", "propagation 100 entries, 13 sites", med, "ms", lr_med, "ms",
           med / lr_med, "<= 0.33", med / lr_med <= 1 / 3,
           "runs %s ms; base catalog %d entries; baseline: PostgreSQL logical replication "
           "cascaded through the same 3 levels (13 databases), same 100-row change, runs %s ms, "
           "mid level %.0f ms; %s" % (["%.0f" % x for x in times], n,
                                      ["%.0f" % x for x in lr_times], lr_mid,
                                      "; ".join(hop_note)))


# ---------------------------------------------------------------------------
# Figure 6: memory during a large full pull


def fig_6(b):
    h, a = b.h, b.args
    n = a.mem_entries
    cat = gen_catalog(os.path.join(b.catdir, "r1_%d.xml" % n), n)
    b.set_upstream(cat)
    top = b.site("MEM", upstream=True)
    top.start()
    s = HwmSampler(top.proc.pid)
    dt, ver, _ = b.top_sync(top, timeout=7200)
    ingest_peak = s.peak_mb() if s.exact else vm_hwm_kb(top.proc.pid) / 1024.0
    log("fig 6: ingest of %d entries %.1fs, top peak RSS %.1f MB" % (n, dt, ingest_peak))
    top.cli_ok("child", "add", "MCH")
    c = b.site("MCH", parent=top, listen=False)
    mark = c.log_mark()
    ps = HwmSampler(top.proc.pid)      # reset after ingest: pull only
    c.start(wait=False)
    cs = None
    deadline = time.monotonic() + 7200
    while time.monotonic() < deadline:
        if cs is None and c.proc is not None:
            cs = HwmSampler(c.proc.pid)
            cs.exact = False       # a fresh process: VmHWM is already exact
        ps.sample()
        if cs:
            cs.sample()
        if find_event(c, mark, r"Synced with parent \S+: version %d\b" % ver):
            break
        time.sleep(0.1)
    pull = b.pull_time(c, mark, ver, timeout=10)
    parent_mb = ps.peak_mb()
    child_mb = vm_hwm_kb(c.proc.pid) / 1024.0
    note = "%d entries; pull %.1fs; top's peak during ingest %.1f MB" % (
        c.catalog_state()[2], pull, ingest_peak)
    if a.quick:
        note += "; QUICK: fewer entries than the 1,000,000 of the target"
    result("6", "parent peak RSS, full pull %d" % n, parent_mb, "MB", None, "MB",
           None, "<= 64 MB", parent_mb <= 64, note)
    result("6", "child peak RSS, full pull %d" % n, child_mb, "MB", None, "MB",
           None, "<= 64 MB", child_mb <= 64)
    c.stop()
    top.stop()


# ---------------------------------------------------------------------------


def run(args):
    os.environ.setdefault("SS_SITESYNCD", os.path.join(args.build, "server", "sitesyncd"))
    os.environ.setdefault("SS_SITESYNC", os.path.join(args.build, "cli", "sitesync"))
    os.environ.setdefault("SS_SOURCE_ROOT", SRC)
    if args.keep:
        os.environ["SS_KEEP_TMP"] = "1"
    figs = args.only.split(",")
    t0 = time.monotonic()
    with harness.Harness("bench") as h:
        b = Bench(h, args)
        # A first vacuum of the previous figure's ~1 GB tables landing inside
        # a measured pull moved medians by 30%: no autovacuum here; figure 5
        # vacuums its databases itself before figure 1 reads them.
        h.pg.query("postgres", "ALTER SYSTEM SET autovacuum = off")
        h.pg.query("postgres", "SELECT pg_reload_conf()")
        if args.pg_slow is not None:
            # statement durations into postgres.log (copied to --logs)
            h.pg.query("postgres", "ALTER SYSTEM SET log_min_duration_statement = %d"
                       % args.pg_slow)
            h.pg.query("postgres", "SELECT pg_reload_conf()")
        for f in figs:
            t1 = time.monotonic()
            try:
                {"1": fig_1_2_5, "2": fig_1_2_5, "5": fig_5, "3": fig_3,
                 "6": fig_6, "4": fig_4, "7": fig_7, "8": fig_8}[f](b)
            except harness.TestFailure as e:
                log("figure %s failed: %s" % (f, e))
                result(f, "figure %s" % f, "error", "", None, "", None, "-", False,
                       str(e)[:300])
            log("figure(s) %s took %.0fs" % (f, time.monotonic() - t1))
            # stop everything between figures (one cluster, fresh sites);
            # keep the daemons' logs for profiling and RESULTS.md
            for s in list(h.sites.values()):
                s.stop()
                if args.logs and os.path.exists(s.logfile):
                    os.makedirs(args.logs, exist_ok=True)
                    shutil.copy(s.logfile, os.path.join(args.logs, s.code + ".log"))
            if args.logs and os.path.exists(h.pg.logfile):
                shutil.copy(h.pg.logfile, os.path.join(args.logs, "postgres.log"))
    print_table()
    sys.stdout.write("\ntotal %.0fs\n" % (time.monotonic() - t0))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md_table())


def fig_4(b):
    import fanout
    fanout.fig_4(b)


def fig_7(b):
    import hierarchy
    hierarchy.fig_7(b)


def fig_8(b):
    import wsus_bench
    wsus_bench.fig_8(b)


def main():
    ap = argparse.ArgumentParser(description="sitesync benchmarks")
    ap.add_argument("--quick", action="store_true",
                    help="fewer entries and runs (figures say so)")
    ap.add_argument("--only", default="1,3,6,4",
                    help="comma list of figures: 1 (runs 1, 2 and 5), 3, 6, 4, 7 (6,276-site "
                    "hierarchy) and 8 (WSUS upstream), not in the default; 5 alone runs only "
                    "the ingest")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--ingest-runs", type=int,
                    help="figure 5: fresh tops to ingest at (default --runs)")
    ap.add_argument("--no-resync", action="store_true",
                    help="figure 5: skip the unchanged re-sync")
    ap.add_argument("--fan-children", type=int, help="figure 4 children")
    ap.add_argument("--build", default=os.path.join(SRC, "build"))
    ap.add_argument("--catalogs", default=os.path.join(
        os.environ.get("TMPDIR", "/tmp"), "sitesync-bench-catalogs"))
    ap.add_argument("--logs", default=os.path.join(
        os.environ.get("TMPDIR", "/tmp"), "sitesync-bench-logs"),
        help="copy every daemon log here at the end of each figure")
    ap.add_argument("--perf", help="perf record the daemons (figures 1, 5) into DIR")
    ap.add_argument("--pg-slow", type=int, metavar="MS",
                    help="log statements slower than MS ms (postgres.log in --logs)")
    ap.add_argument("--markdown", help="also write the table as markdown here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--apply-while-receiving", action="store_true",
                    help="sites apply a pull while it arrives ([replication] "
                    "apply_while_receiving = true)")
    ap.add_argument("--no-serve-while-producing", action="store_true",
                    help="parents serve only finished streams ([replication] "
                    "serve_while_producing = false; the default is true)")
    ap.add_argument("--mem-entries", type=int,
                    help="figure 6 catalog size (default 1,000,000; --quick 100,000)")
    ap.add_argument("--h7-mids", type=int,
                    help="figure 7 mid sites (default 25; --quick 5)")
    ap.add_argument("--h7-leaves", type=int,
                    help="figure 7 light leaves per mid (default 250; --quick 50)")
    ap.add_argument("--wsus-revisions", type=int,
                    help="figure 8 upstream size (default 25,000; --quick 2,000)")
    args = ap.parse_args()
    args.entries = 20000 if args.quick else 200000
    args.tree_entries = 2000 if args.quick else 10000
    args.mem_entries = args.mem_entries or (100000 if args.quick else 1000000)
    args.wsus_revisions = args.wsus_revisions or (2000 if args.quick else 25000)
    args.prop_runs = 3 if args.quick else 5
    args.fan_children = args.fan_children or (50 if args.quick else 250)
    args.fan_entries = 10000
    args.h7_mids = args.h7_mids or (5 if args.quick else 25)
    args.h7_leaves = args.h7_leaves or (50 if args.quick else 250)
    args.fan_base = 20000
    figs = args.only.split(",")
    # 1 and 2 share figure 5's top site: 5 alone is the ingest only
    args.only = ",".join(dict.fromkeys(
        "1" if f == "2" or (f == "5" and "1" in figs) else f for f in figs))
    sys.path.insert(0, HERE)
    try:
        run(args)
    except harness.Skip as e:
        log("SKIP: %s" % e)
        sys.exit(77)


if __name__ == "__main__":
    main()
