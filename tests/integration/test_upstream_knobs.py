#!/usr/bin/env python3
"""The top site's upstream and schedule settings, read from what an
operator sees (status --json, the CLI's exit status and message).

One top site CAS, restarted with a new sitesync.conf per phase:
1. [upstream] proxy: the upstream URL names a host that does not exist;
   the catalog arrives only through a loopback HTTP proxy that counts the
   requests it is asked for (absolute-form, for that URL).
2. [upstream] timeout and `sync --timeout`: the upstream accepts and never
   answers. `sync --yes --wait --timeout 1` gives up after 1 s with exit
   status 2 and says it was waiting for CAS's sync; every fetch attempt is
   cut at `timeout` seconds, the sync fails with a timeout in last_error
   and [schedule] retry_minutes sets next_retry.
3. [upstream] connect_timeout: the upstream's listen queue is full, so the
   connection is never set up; every attempt gives up at connect_timeout.
4. [schedule] utc: with TZ five hours east of UTC, the same cron gives a
   next_upstream_sync five hours apart with utc = true and utc = false.

SS_PHASES=proxy,timeout,connect,utc (the default: all) runs a subset, for
checking one mutant quickly.
"""

import calendar
import datetime
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for, NotYet  # noqa: E402

ENTRIES = 200
SEED = 23
TIMEOUT = 120
FAKE_URL = "http://catalog.upstream.invalid/wsus/catalog.xml"
READ_TIMEOUT = 2        # [upstream] timeout in phase 2
CONNECT_TIMEOUT = 2     # [upstream] connect_timeout in phase 3
OVERALL_TIMEOUT = 5     # [upstream] timeout in phase 3
RETRY_MINUTES = 7
ATTEMPTS = 4            # upstream/sync.c asks fetch_to_file for 3 retries


class Proxy:
    """A forward HTTP proxy that serves one catalog for one absolute URL."""

    def __init__(self, body):
        self.requests = []
        self.lock = threading.Lock()
        px = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                with px.lock:
                    px.requests.append(self.path)
                if self.path != FAKE_URL:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


class Silent:
    """Accepts connections, reads, never answers; records how long each
    connection stayed open before the client closed it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.held = []          # seconds each connection was held open
        self.lock = threading.Lock()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.hold, args=(c,), daemon=True).start()

    def hold(self, c):
        t0 = time.monotonic()
        c.settimeout(300)
        try:
            while c.recv(4096):
                pass
        except OSError:
            pass
        with self.lock:
            self.held.append(time.monotonic() - t0)
        c.close()


def parse_time(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def self_row(site):
    st = site.status_json()
    for r in st["sites"]:
        if r["site"] == site.code:
            return st, r
    raise harness.TestFailure("%s missing from its own status" % site.code)


def reconfigure(site, url=None, env=None, **sections):
    if site.running():
        site.stop()
    if url is not None:
        site.upstream = url
    site.extra = sections
    site.write_config()
    site.start(env=env)


def wait_sync_end(site, after, what):
    def ended():
        _, r = self_row(site)
        end = r.get("last_sync_end")
        if r["state"] == "syncing" or end is None or parse_time(end) < after:
            raise NotYet("%s: state %s, last_sync_end %s" % (site.code, r["state"], end))
        return r
    return wait_for(ended, TIMEOUT, what)


def phase_proxy(h, cas, body):
    px = Proxy(body)
    try:
        reconfigure(cas, url=FAKE_URL,
                    upstream={"proxy": "http://127.0.0.1:%d" % px.port})
        start = int(time.time())
        cas.cli_ok("sync", "--yes")
        r = wait_sync_end(cas, start, "CAS's sync through the proxy to end")
        check(cas.catalog_state()[0] == 1, "CAS holds %r after the sync through the proxy "
              "(state %s, last_error %r)" % (cas.catalog_state(), r["state"], r.get("last_error")))
        check(cas.catalog_state()[2] == ENTRIES, "CAS holds %r, want %d entries"
              % (cas.catalog_state(), ENTRIES))
        with px.lock:
            reqs = list(px.requests)
        check(reqs == [FAKE_URL], "the proxy was asked for %r, want exactly [%r]"
              % (reqs, FAKE_URL))
        log("proxy: the catalog of %s came through the proxy (%d request)"
            % (FAKE_URL, len(reqs)))
    finally:
        px.close()


def phase_timeout(h, cas):
    srv = Silent()
    url = "http://127.0.0.1:%d/catalog.xml" % srv.port
    reconfigure(cas, url=url,
                upstream={"timeout": str(READ_TIMEOUT), "connect_timeout": "10"},
                schedule={"retry_minutes": str(RETRY_MINUTES)})
    before = cas.catalog_state()
    # Late in a second: a timeout counted in whole clock seconds from the
    # second the CLI started in would end well before 1 s.
    time.sleep(1.8 - time.time() % 1.0 if time.time() % 1.0 > 0.8 else 0.8 - time.time() % 1.0)
    t0 = time.time()
    start = int(t0)
    rc, out, err = cas.cli("sync", "--yes", "--wait", "--timeout", "1", timeout=60)
    took = time.time() - t0
    check(rc == 2, "sync --timeout 1: exit status %d, want 2 (stdout %r, stderr %r)"
          % (rc, out, err))
    want = "timed out after 1 s waiting for CAS to finish its sync"
    check(want in err, "sync --timeout 1 said %r, want %r" % (err, want))
    check(1 <= took < 10, "sync --timeout 1 returned after %.1f s" % took)
    log("sync --timeout: exit 2 after %.1f s: %s" % (took, err.strip()))

    r = wait_sync_end(cas, start, "CAS's sync against the silent upstream to fail")
    with srv.lock:
        held = list(srv.held)
    check(len(held) == ATTEMPTS, "the silent upstream saw %d connections end, want %d: %r"
          % (len(held), ATTEMPTS, held))
    for s in held:
        check(READ_TIMEOUT - 0.5 <= s <= READ_TIMEOUT + 3,
              "a fetch held the silent upstream %.1f s, [upstream] timeout is %d: %r"
              % (s, READ_TIMEOUT, held))
    check(r["state"] == "failed", "CAS state %r after the timeouts, want failed" % r["state"])
    err = r.get("last_error") or ""
    check("timed out" in err.lower() or "timeout" in err.lower(),
          "last_error %r does not say the fetch timed out" % err)
    check(cas.catalog_state() == before, "the failed sync changed the catalog")
    # [schedule] retry_minutes: next_retry = the failure + the interval.
    end, retry = parse_time(r["last_sync_end"]), r.get("next_retry")
    check(retry is not None, "no next_retry after a failed upstream sync: %r" % r)
    gap = parse_time(retry) - end
    check(abs(gap - 60 * RETRY_MINUTES) <= 3,
          "next_retry %s is %d s after last_sync_end %s, want %d"
          % (retry, gap, r["last_sync_end"], 60 * RETRY_MINUTES))
    log("timeout: %d attempts cut at %s s; last_error %r; next_retry +%d s"
        % (len(held), ", ".join("%.1f" % s for s in held), err, gap))
    srv.sock.close()


def phase_connect_timeout(h, cas):
    # A kernel that answers a SYN beyond the full queue with a SYN cookie
    # lets a connect complete now and then (the fetch then times out with
    # "0 bytes received"): another port, another try.
    for attempt in range(3):
        if connect_timeout_once(h, cas, last=attempt == 2):
            return


def connect_timeout_once(h, cas, last):
    # A listen queue of one, filled by connections never accepted: the
    # kernel drops further SYNs, so the daemon's connect does not complete.
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    reconfigure(cas, url="http://127.0.0.1:%d/catalog.xml" % port,
                upstream={"timeout": str(OVERALL_TIMEOUT),
                          "connect_timeout": str(CONNECT_TIMEOUT)},
                schedule={"retry_minutes": str(RETRY_MINUTES)})
    fillers = [harness.connect_nonblocking(port) for _ in range(4)]
    time.sleep(0.3)
    probe = socket.socket()
    probe.settimeout(1)
    try:
        probe.connect(("127.0.0.1", port))
        full = False
    except socket.timeout:
        full = True
    finally:
        probe.close()
    if not full:
        # Not a failure of sitesync: this kernel does not hold the queue.
        log("connect_timeout: NOT CHECKED, this kernel completes connections "
            "beyond the listen queue")
        for c in fillers:
            c.close()
        lsock.close()
        return True
    start = int(time.time())
    t0 = time.monotonic()
    cas.cli_ok("sync", "--yes")
    r = wait_sync_end(cas, start, "CAS's sync against the full listen queue to fail")
    took = time.monotonic() - t0
    # At most ATTEMPTS fetches of OVERALL_TIMEOUT s plus backoff 1 + 2 + 4 s.
    limit = ATTEMPTS * OVERALL_TIMEOUT + 7 + 5
    check(took <= limit, "the sync took %.1f s to fail, the timeouts allow %d" % (took, limit))
    err = r.get("last_error") or ""
    m = re.search(r"Failed to connect to 127\.0\.0\.1 port %d after (\d+) ms" % port, err)
    if m is None and not last and "with 0 bytes received" in err:
        log("connect_timeout: a connect completed past the full queue (%r); again" % err)
        for c in fillers:
            c.close()
        lsock.close()
        return False
    check(r["state"] == "failed" and m is not None,
          "state %r, last_error %r: want failed with a connect timeout" % (r["state"], err))
    ms = int(m.group(1))
    check(CONNECT_TIMEOUT * 1000 <= ms < CONNECT_TIMEOUT * 1000 + 1000,
          "the connect gave up after %d ms, [upstream] connect_timeout is %d s"
          % (ms, CONNECT_TIMEOUT))
    log("connect_timeout: failed after %.1f s: %r" % (took, err))
    for c in fillers:
        c.close()
    lsock.close()
    return True


def next_daily(now, hour, minute, offset_s):
    """Next instant at hour:minute on a clock offset_s seconds east of UTC."""
    local = datetime.datetime.fromtimestamp(now + offset_s, datetime.timezone.utc)
    cand = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if cand.timestamp() <= local.timestamp():
        cand += datetime.timedelta(days=1)
    return int(cand.timestamp()) - offset_s


def phase_utc(h, cas, url):
    # POSIX TZ "<+05>-5": local time is UTC + 5 h, no DST.
    env = {"TZ": "<+05>-5"}
    now = time.time()
    # A time at least an hour away on both clocks.
    t = datetime.datetime.fromtimestamp(now + 3 * 3600, datetime.timezone.utc)
    hour, minute = t.hour, 30
    cron = "%d %d * * *" % (minute, hour)
    for utc, offset in (("true", 0), ("false", 5 * 3600)):
        reconfigure(cas, url=url, env=env,
                    schedule={"cron": cron, "utc": utc})
        st, _ = self_row(cas)
        got = st.get("next_upstream_sync")
        want = next_daily(time.time(), hour, minute, offset)
        check(got is not None and parse_time(got) == want,
              "cron %r utc=%s with TZ=%s: next_upstream_sync %r, want %s"
              % (cron, utc, env["TZ"], got,
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(want))))
        log("utc=%s: cron %r runs next at %s" % (utc, cron, got))


def test(h):
    catalog = h.gen_catalog(h.path("upstream", "catalog.xml"), ENTRIES, 1, SEED)
    with open(catalog, "rb") as f:
        body = f.read()
    cas = h.add_site("CAS", upstream=FAKE_URL)
    only = os.environ.get("SS_PHASES", "proxy,timeout,connect,utc").split(",")
    if "proxy" in only:
        phase_proxy(h, cas, body)
    if "timeout" in only:
        phase_timeout(h, cas)
    if "connect" in only:
        phase_connect_timeout(h, cas)
    if "utc" in only:
        phase_utc(h, cas, "file://" + catalog)


if __name__ == "__main__":
    harness.main(test, "upstream_knobs")
