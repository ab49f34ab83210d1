#!/usr/bin/env python3
"""deploy/demo.sh end to end: start, every site at the top version, stop.

Runs the demo the way the README says, from a copy of the tree inside a
directory of mode 0700 (like a clone in root's home: as root, the postgres
user cannot reach it), with the default demo directory and the binaries of
this build (SS_SITESYNCD / SS_SITESYNC), then checks:
  - as root, the cluster went to /tmp/sitesync-demo-pg.* (said so, and
    recorded in DEMO/pgdir), and `stop` removes that directory too;
  - the script exits 0 and its status table shows all five sites at one
    version, with "All 5 sites hold catalog version V.";
  - `sitesync status --json` at CAS agrees (every site, same version, > 0);
  - `deploy/demo.sh stop` leaves no daemon or postmaster running and
    removes the directory.
Exit 0 pass, 1 fail, 77 skip (no PostgreSQL server binaries or openssl).
"""

import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

SITES = ["CAS", "P01", "P02", "S01", "S02"]


def run(argv, env, timeout):
    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout


def pids_in(demo):
    """Daemon pids from the demo's pid files plus the postmaster's."""
    pids = []
    sites = os.path.join(demo, "sites")
    for code in SITES:
        f = os.path.join(sites, code, "sitesyncd.pid")
        if os.path.exists(f):
            pids.append(int(open(f).read().strip()))
    pm = os.path.join(pgdir_of(demo), "data", "postmaster.pid")
    if os.path.exists(pm):
        pids.append(int(open(pm).readline().strip()))
    return pids


def pgdir_of(demo):
    """Where the demo's cluster lives: DEMO/pg or what DEMO/pgdir names."""
    f = os.path.join(demo, "pgdir")
    if os.path.exists(f):
        return open(f).read().strip()
    return os.path.join(demo, "pg")


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test(src, env, demo):
    script = os.path.join(src, "deploy", "demo.sh")
    harness.check(stat.S_IMODE(os.stat(os.path.dirname(src)).st_mode) == 0o700,
                  "the clone's parent is not 0700")
    # tests/run from such a clone, with TMPDIR inside it: the harness puts
    # its cluster where the postgres user can reach it.
    if os.geteuid() == 0:
        saved = tempfile.tempdir
        tempfile.tempdir = os.path.dirname(src)
        try:
            where = harness.temp_parent()
        finally:
            tempfile.tempdir = saved
        harness.check(where == "/tmp", "harness ROOT parent %s with TMPDIR in a 0700 home"
                      % where)
    t0 = time.monotonic()
    rc, out = run([script], env, 100)
    harness.log("demo.sh took %.1fs, exit %d" % (time.monotonic() - t0, rc))
    sys.stderr.write(out[-3000:])
    harness.check(rc == 0, "deploy/demo.sh exited %d" % rc)

    m = re.search(r"All 5 sites hold catalog version (\d+)\.", out)
    harness.check(m is not None, "no 'All 5 sites hold catalog version' line")
    top = int(m.group(1))
    harness.check(top > 0, "top version %d" % top)
    # The tree table: one row per site, all at the top version.
    rows = {}
    for line in out.splitlines():
        mm = re.match(r"^[\s│├└─]*([A-Z0-9]{3})\s+(\w+)\s+(\d+)\s+(\d+)\s", line)
        if mm:
            rows[mm.group(1)] = (mm.group(2), int(mm.group(3)), int(mm.group(4)))
    harness.check(sorted(rows) == sorted(SITES), "status table rows %r" % rows)
    for code, (state, ver, behind) in rows.items():
        harness.check(ver == top and behind == 0,
                      "%s at version %d (behind %d), top %d" % (code, ver, behind, top))
    harness.check("Dashboard:" in out and "demo.sh stop" in out,
                  "no dashboard / stop instructions")
    pgdir = pgdir_of(demo)
    if os.geteuid() == 0:
        # The 0700 parent hides DEMO from the postgres user.
        harness.check(re.fullmatch(r"/tmp/sitesync-demo-pg\.\w+", pgdir) is not None,
                      "cluster in %s, not under /tmp" % pgdir)
        harness.check("PostgreSQL files go to %s" % pgdir in out,
                      "demo.sh did not say where the cluster went")
        harness.check(os.stat(pgdir).st_uid == pwd.getpwnam("postgres").pw_uid,
                      "%s not owned by postgres" % pgdir)
    else:
        harness.check(pgdir == os.path.join(demo, "pg"), "cluster in %s" % pgdir)

    conf = os.path.join(demo, "sites", "CAS", "sitesync.conf")
    rc, js = run([env["SS_SITESYNC"], "-c", conf, "status", "--json"], env, 30)
    harness.check(rc == 0, "status --json exited %d: %s" % (rc, js))
    st = json.loads(js)
    harness.check(st["top_version"] == top, "top_version %r != %d"
                  % (st["top_version"], top))
    got = {s["site"]: s["catalog_version"] for s in st["sites"]}
    harness.check(got == {c: top for c in SITES}, "status --json: %r" % got)
    log = open(os.path.join(demo, "sites", "S02", "sync.log")).read()
    harness.check("Successfully synced site with parent P02, version %d" % top in log,
                  "S02 sync log:\n" + log)
    harness.log("all five sites at version %d" % top)

    for code in SITES:
        text = open(os.path.join(demo, "sites", code, "sitesyncd.log"),
                    errors="replace").read()
        bad = [p for p in harness.SANITIZER_PATTERNS if p in text]
        harness.check(not bad, "%s daemon log contains %r:\n%s"
                      % (code, bad, text[-4000:]))

    pids = pids_in(demo)
    harness.check(len(pids) == 6, "expected 5 daemons + postmaster, got %r" % pids)
    rc, out = run([script, "stop"], env, 90)
    sys.stderr.write(out)
    harness.check(rc == 0, "demo.sh stop exited %d" % rc)
    harness.wait_for(lambda: not any(alive(p) for p in pids), 10,
                     "demo processes to exit")
    harness.check(not os.path.exists(demo), "%s still exists" % demo)
    harness.check(not os.path.exists(pgdir), "%s still exists" % pgdir)
    rc, out = run([script, "stop"], env, 30)
    harness.check(rc == 0, "second demo.sh stop exited %d: %s" % (rc, out))
    harness.log("demo.sh stop: nothing left running, %s removed" % demo)


def main():
    src = harness.source_root()
    env = dict(os.environ)
    for var in ("SS_SITESYNCD", "SS_SITESYNC"):
        if not os.access(env.get(var, ""), os.X_OK):
            harness.log("SKIP demo: %s not set or not executable" % var)
            sys.exit(harness.SKIP)
    if not harness.find_pg_bin() or not shutil.which("openssl"):
        harness.log("SKIP demo: PostgreSQL server binaries or openssl missing")
        sys.exit(harness.SKIP)
    # A "home" of mode 0700 (mkdtemp's) holding a copy of what demo.sh
    # reads from its tree: the README's first command, run from a clone.
    tmp = tempfile.mkdtemp(prefix="ss-demo-")
    clone = os.path.join(tmp, "sitesync")
    os.makedirs(os.path.join(clone, "tests"))
    shutil.copytree(os.path.join(src, "deploy"), os.path.join(clone, "deploy"),
                    ignore=shutil.ignore_patterns("demo"))
    shutil.copy2(os.path.join(src, "tests", "run"), os.path.join(clone, "tests"))
    demo = os.path.join(clone, "demo")
    env.pop("SITESYNC_DEMO_DIR", None)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))
    rc = 1
    try:
        test(clone, env, demo)
        rc = 0
        harness.log("PASS demo")
    except harness.TestFailure as e:
        harness.log("FAIL demo: %s" % e)
    finally:
        if os.path.exists(demo):
            run([os.path.join(clone, "deploy", "demo.sh"), "stop"], env, 90)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(rc)


if __name__ == "__main__":
    main()
