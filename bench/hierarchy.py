"""Figure 7: the largest hierarchy Configuration Manager allows on one machine.

One top (TOP), `h7_mids` mid sites (M00.., real daemons with their own
databases) and `h7_leaves` light leaves under each (bench/lightchild
--stay: the real protocol over mutual TLS with their own certificates, a
delta pull on every SyncRequest with the digest checked, and a StatusReport
of their own row signed with their own key every heartbeat). 25 x 250 gives
6,276 sites. Every site runs the default heartbeat (10 s, timeout 30 s).

Leaf certificates are made in this process with the `cryptography` module,
exactly as deploy/sitesync-certs makes them (EC P-256, CN = site code, the
same extensions, signed by the hierarchy's CA); per-site sitesync-certs
runs take several openssl processes each. Mids are approved at the top
with `sitesync child add`; leaves at their mid through the control
socket's child.add, the request `sitesync child add` sends, without
6,250 process starts.

Measured:
  converged   the top's "Synced from upstream: version N" -> the last of
              the mids' "Synced with parent ...: version N" and the leaves'
              "reached SITE N T" lines (one wall clock: log timestamps are
              UTC ms, lightchild prints CLOCK_REALTIME)
  status      `sitesync status --json`, `sitesync status` (the table),
              GET /status and GET /metrics at the top: wall time and size
  traffic     status bytes per heartbeat: TCP bytes received on the top's
              and the mids' listening ports over two idle heartbeats
              (ss -ti), and the leaves' own count of StatusReport bytes
  RSS         VmHWM of the top and of every mid over the whole run
"""

import collections
import datetime
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

import harness
from harness import check, log, wait_for

B = sys.modules["__main__"]

# First character of each mid's leaves: not M or T, so no leaf code is a
# mid's (M00..) or the top's (TOP).
FIRST = "0123456789ABCDEFGHIJKLNOPQRSUVWXYZ"
B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
HB = 10             # heartbeat_seconds of every site (the default)


def leaf_codes(i, n):
    check(i < len(FIRST) and n <= 36 * 36, "figure 7: at most %d mids of %d leaves"
          % (len(FIRST), 36 * 36))
    return [FIRST[i] + B36[j // 36] + B36[j % 36] for j in range(n)]


def make_certs(certs, codes):
    """Site certificates as deploy/sitesync-certs `site` makes them."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        for c in codes:
            certs.site(c)
        return "deploy/sitesync-certs"
    import ipaddress
    with open(certs.ca, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(certs.dir, "ca.key"), "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    now = datetime.datetime.now(datetime.timezone.utc)
    san = x509.SubjectAlternativeName([
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1"))])
    for code in codes:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, code)]))
                .issuer_name(ca.subject)
                .public_key(key.public_key())
                .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, False,
                                             False, False, False), True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), False)
                .add_extension(san, False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
                .add_extension(aki, False)
                .sign(ca_key, hashes.SHA256()))
        kpath = certs.key(code)
        fd = os.open(kpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()))
        with open(certs.cert(code), "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
    return "python cryptography"


def ctl(site, cmd, args):
    """One control-socket request, as the CLI sends it; returns the reply."""
    rep = harness.control_request(site, cmd, args)
    check(rep.get("ok") is True, "%s: %s %r: %r" % (site.code, cmd, args, rep))
    return rep


def timed(fn, runs=3):
    """Median wall seconds of fn() and the size of its last result."""
    ts, out = [], None
    for _ in range(runs):
        t0 = time.monotonic()
        out = fn()
        ts.append(time.monotonic() - t0)
    return statistics.median(ts), len(out), ts


def http_get(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=60) as r:
        check(r.status == 200, "GET %s answered %d" % (path, r.status))
        return r.read()


def port_bytes_in(ports):
    """TCP bytes received so far on established connections whose local
    port is in `ports` (the daemons' listening ports): {port: bytes}."""
    out = subprocess.run(["ss", "-tinH", "state", "established"], stdout=subprocess.PIPE,
                         text=True, check=True).stdout
    got = {p: 0 for p in ports}
    cur = None
    for line in out.splitlines():
        if not line.startswith((" ", "\t")):
            f = line.split()
            cur = None
            if len(f) >= 3:
                try:
                    cur = int(f[2].rsplit(":", 1)[1])
                except ValueError:
                    cur = None
            continue
        m = re.search(r"bytes_received:(\d+)", line)
        if m and cur in got:
            got[cur] += int(m.group(1))
    return got


class Leaves:
    """One lightchild --stay process per mid, its stdout in a file."""

    def __init__(self, b, mid, codes, base_file, digest, have):
        self.mid = mid
        self.codes = codes
        self.out = b.h.path("leaves_%s.out" % mid.code)
        self.err = b.h.path("leaves_%s.err" % mid.code)
        exe = os.path.join(b.args.build, "bench", "lightchild")
        check(os.access(exe, os.X_OK), "%s not built (ninja -C build)" % exe)
        self.proc = subprocess.Popen(
            [exe, "--parent", "127.0.0.1:%d" % mid.port, "--ca", b.h.certs.ca,
             "--certs", b.h.certs.dir, "--sites", ",".join(codes), "--have", str(have),
             "--digest", digest, "--base", base_file, "--stay", str(HB)],
            stdin=subprocess.DEVNULL, stdout=open(self.out, "w"), stderr=open(self.err, "w"))
        b.h.record_pid("leaves_" + mid.code, self.proc.pid)
        self.pos = 0
        self.up = set()
        self.reached = {}           # version -> {site: time}
        self.lost = 0
        self.lost_why = collections.Counter()
        self.fails = []
        self.stats = []             # (bytes, reports, time)

    def poll(self):
        with open(self.out) as f:
            f.seek(self.pos)
            data = f.read()
        end = data.rfind("\n") + 1
        self.pos += len(data[:end].encode())
        for line in data[:end].splitlines():
            w = line.split()
            if not w:
                continue
            if w[0] == "up":
                self.up.add(w[1])
            elif w[0] == "reached":
                self.reached.setdefault(int(w[2]), {})[w[1]] = float(w[3])
            elif w[0] == "lost":
                self.lost += 1
                self.lost_why[" ".join(w[3:])] += 1
                self.up.discard(w[1])
            elif w[0] == "fail":
                self.fails.append(line)
            elif w[0] == "stats":
                self.stats.append((int(w[1]), int(w[2]), float(w[3])))
        check(self.proc.poll() is None, "lightchild for %s exited %s: %s" % (
            self.mid.code, self.proc.returncode, open(self.err).read()[-1000:]))
        check(not self.fails, "leaf failed: %s" % self.fails[:3])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def fig_7(b):
    h, a = b.h, b.args
    n_mids, n_leaves = a.h7_mids, a.h7_leaves
    n_sites = 1 + n_mids + n_mids * n_leaves
    n = a.tree_entries
    cat = B.gen_catalog(os.path.join(b.catdir, "r1_%d.xml" % n), n)
    b.set_upstream(cat)
    # Every site at the default heartbeat: status traffic is what is measured.
    common = {"replication": {"heartbeat_seconds": str(HB), "heartbeat_timeout": str(3 * HB)},
              "log": {"level": "info"}}
    http = harness.PortLock()
    top = b.site("TOP", upstream=True,
                 extra=dict(common, http={"listen": "127.0.0.1:%d" % http.port}))
    top.start()
    b.top_sync(top)
    mids = [b.site("M%02d" % i, parent=top, extra=common) for i in range(n_mids)]
    for m in mids:
        top.cli_ok("child", "add", m.code)
    for m in mids:
        m.start(wait=False)
    for m in mids:
        m.wait_ready(120)
    h.wait_converged(top, mids, 900, "%d mids at version 1" % n_mids)
    v1, d1, entries = top.catalog_state()
    log("fig 7: top and %d mids hold version %d (%d entries)" % (n_mids, v1, entries))
    base_file = h.path("h7_base.txt")
    with open(base_file, "w") as f:
        f.write(top.sql("SELECT update_id, encode(entry_hash,'hex') FROM updates")
                .replace("|", " ") + "\n")

    codes = [leaf_codes(i, n_leaves) for i in range(n_mids)]
    t0 = time.monotonic()
    how = make_certs(h.certs, [c for cs in codes for c in cs])
    t_certs = time.monotonic() - t0
    t0 = time.monotonic()
    for m, cs in zip(mids, codes):
        for c in cs:
            ctl(m, "child.add", {"site": c})
    t_approve = time.monotonic() - t0
    log("fig 7: %d leaf certificates in %.1fs (%s), approved in %.1fs"
        % (n_mids * n_leaves, t_certs, how, t_approve))

    leaves = [Leaves(b, m, cs, base_file, d1, v1) for m, cs in zip(mids, codes)]
    try:
        _fig_7_run(b, top, mids, leaves, http.port, n_sites, cat, t_certs, t_approve, how)
    finally:
        for lv in leaves:
            lv.stop()
            h.forget_pid("leaves_" + lv.mid.code)
        http.release()


def top_rows(top):
    st = top.status_json()
    return st["sites"]


def _fig_7_run(b, top, mids, leaves, http_port, n_sites, cat, t_certs, t_approve, how):
    h, a = b.h, b.args
    n_leaves = sum(len(lv.codes) for lv in leaves)
    t0 = time.monotonic()

    def all_up():
        for lv in leaves:
            lv.poll()
        up = sum(len(lv.up) for lv in leaves)
        if up < n_leaves:
            raise harness.NotYet("%d of %d leaves connected" % (up, n_leaves))
        return True
    wait_for(all_up, 900, "every leaf connected and approved", interval=1)
    t_up = time.monotonic() - t0
    log("fig 7: %d leaves connected in %.1fs" % (n_leaves, t_up))

    # Every site's signed row at the top (one heartbeat at most after the
    # leaves are up, plus the relay through its mid).
    def rows_in():
        rows = top_rows(top)
        got = sum(1 for r in rows if r.get("reported_at"))
        if got < n_sites:
            raise harness.NotYet("top shows %d of %d sites reporting" % (got, n_sites))
        return rows
    rows = wait_for(rows_in, 300, "every site's row at the top", interval=3)
    t_rows = time.monotonic() - t0
    log("fig 7: the top shows all %d sites %.1fs after the leaves started" % (len(rows), t_rows))

    # Idle status traffic over two heartbeats, and the top's CPU meanwhile.
    import fanout
    ports = [top.port] + [m.port for m in mids]
    for lv in leaves:
        lv.poll()
    w0 = time.time()
    b0 = port_bytes_in(ports)
    c0 = fanout.cpu_seconds(top.proc.pid)
    cm0 = [fanout.cpu_seconds(m.proc.pid) for m in mids]
    time.sleep(2 * HB + 1)
    b1 = port_bytes_in(ports)
    c1 = fanout.cpu_seconds(top.proc.pid)
    cm1 = [fanout.cpu_seconds(m.proc.pid) for m in mids]
    for lv in leaves:
        lv.poll()
    # Each lightchild prints its StatusReport byte count every heartbeat:
    # the rate over the window, per heartbeat.
    leaf_status = 0.0
    for lv in leaves:
        st = [x for x in lv.stats if x[2] >= w0 - 1]
        if len(st) >= 2 and st[-1][2] > st[0][2]:
            leaf_status += (st[-1][0] - st[0][0]) / (st[-1][2] - st[0][2]) * HB
    per = HB / (2.0 * HB + 1)
    top_in = (b1[top.port] - b0[top.port]) * per
    mids_in = sum(b1[m.port] - b0[m.port] for m in mids) * per
    top_cpu = (c1 - c0) / (2.0 * HB + 1)
    mid_cpu = max(y - x for x, y in zip(cm0, cm1)) / (2.0 * HB + 1)
    log("fig 7: per heartbeat: %.2f MB into the top, %.2f MB into the mids (leaves' "
        "StatusReports %.2f MB); top CPU %.0f%%, busiest mid %.0f%%"
        % (top_in / 1e6, mids_in / 1e6, leaf_status / 1e6, top_cpu * 100, mid_cpu * 100))

    # The top's status with every row.
    st_json = timed(lambda: top.cli_ok("status", "--json", timeout=120))
    st_table = timed(lambda: top.cli_ok("status", timeout=120))
    st_http = timed(lambda: http_get(http_port, "/status"))
    st_metrics = timed(lambda: http_get(http_port, "/metrics"))
    for name, v in (("status --json", st_json), ("status (table)", st_table),
                    ("/status", st_http), ("/metrics", st_metrics)):
        log("fig 7: top %s: %.3fs, %.2f MB (runs %s)" % (
            name, v[0], v[1] / 1e6, ["%.3f" % x for x in v[2]]))

    # Convergence of a 100-entry version, prop_runs times.
    times, mid_times, leaf_meds = [], [], []
    cur = cat
    n = a.tree_entries
    for r in range(a.prop_runs):
        nxt = h.path("h7_r%d.xml" % r)
        k = B.retitle(cur, nxt, max(1, n // 100), "h7 %d" % r, offset=r)
        cur = nxt
        b.set_upstream(nxt)
        marks = {m.code: m.log_mark() for m in mids}
        mark = top.log_mark()
        top.cli_ok("sync", "--yes")
        t_top = B.wait_event(top, mark, r"Synced from upstream: version (\d+)", 300,
                             "top commit")
        msg = [m for t, _, m in B.log_events(top, mark) if "Synced from upstream" in m][0]
        ver = int(re.search(r"version (\d+)", msg).group(1))
        ends = {}
        for m in mids:
            ends[m.code] = B.wait_event(m, marks[m.code],
                                        r"Synced with parent \S+: version %d\b" % ver,
                                        300, "%s at version %d" % (m.code, ver))

        def leaves_at():
            got = 0
            for lv in leaves:
                lv.poll()
                got += len(lv.reached.get(ver, {}))
            if got < n_leaves:
                raise harness.NotYet("%d of %d leaves at version %d" % (got, n_leaves, ver))
            return True
        wait_for(leaves_at, 600, "every leaf at version %d" % ver, interval=0.5)
        lt = [t for lv in leaves for t in lv.reached[ver].values()]
        dt = max(max(ends.values()), max(lt)) - t_top
        times.append(dt)
        mid_times.append(max(ends.values()) - t_top)
        leaf_meds.append(statistics.median(lt) - t_top)
        log("fig 7: version %d (%d entries changed) at all %d sites %.2fs after the top "
            "committed it (mids %.2fs, leaves median %.2fs)"
            % (ver, k, n_sites, dt, mid_times[-1], leaf_meds[-1]))
        time.sleep(2)

    top_rss = B.vm_hwm_kb(top.proc.pid) / 1024.0
    mid_rss = [B.vm_hwm_kb(m.proc.pid) / 1024.0 for m in mids]
    lc_rss = [B.vm_hwm_kb(lv.proc.pid) / 1024.0 for lv in leaves]
    lost = sum(lv.lost for lv in leaves)
    lost_why = sum((lv.lost_why for lv in leaves), collections.Counter())
    lost_why = ", ".join("%s: %d" % kv for kv in lost_why.most_common(4)) or "none"
    result = B.result
    q = "; QUICK: %d sites, not 6,276" % n_sites if a.quick else ""
    med = statistics.median(times)
    result("7", "converged, 100 entries to %d sites" % n_sites, med, "s", None, "", None,
           "<= 10 s", med <= 10,
           "runs %s s from the top's commit to the last site; mids %s s; leaves' median %s s; "
           "%d mids x %d light leaves; base catalog %d entries%s"
           % (["%.2f" % x for x in times], ["%.2f" % x for x in mid_times],
              ["%.2f" % x for x in leaf_meds], len(mids), n_leaves // len(mids), n, q))
    for name, v in (("status --json", st_json), ("/status", st_http),
                    ("/metrics", st_metrics), ("status (CLI table)", st_table)):
        result("7", "top %s, %d rows" % (name, n_sites), v[0] * 1000, "ms", None, "", None,
               "<= 1 s", v[0] <= 1.0,
               "%.2f MB; runs %s s" % (v[1] / 1e6, ["%.3f" % x for x in v[2]]))
    result("7", "status traffic per heartbeat into the top", top_in / 1e6, "MB", None, "",
           None, "report", None,
           "TCP bytes in on the top's port over 21 idle seconds, per %d s heartbeat; into the %d "
           "mids %.2f MB (the leaves' StatusReports %.2f MB of it); top CPU %.0f%% of a core, "
           "busiest mid %.0f%%" % (HB, len(mids), mids_in / 1e6, leaf_status / 1e6,
                                  top_cpu * 100, mid_cpu * 100))
    result("7", "top peak RSS", top_rss, "MB", None, "", None, "<= 128 MB", top_rss <= 128)
    result("7", "mid peak RSS (largest of %d)" % len(mids), max(mid_rss), "MB", None, "",
           None, "<= 128 MB", max(mid_rss) <= 128,
           "mids %.1f-%.1f MB; lightchild processes (%d leaves each) up to %.1f MB; "
           "leaf links lost and redialled: %d (%s); %d leaf certificates in %.0fs (%s), "
           "approved in %.0fs" % (min(mid_rss), max(mid_rss), n_leaves // len(mids),
                                  max(lc_rss), lost, lost_why, n_leaves, t_certs, how, t_approve))
