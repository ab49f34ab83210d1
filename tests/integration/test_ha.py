#!/usr/bin/env python3
"""High availability: two sitesyncd for one site database (DESIGN §7).

The top site runs twice, A and B, on one database. A PostgreSQL advisory
lock makes one of them the active writer; the other is a standby that
follows the active one's commits and refuses to sync. P01 lists both
addresses as its parent. Killing the active daemon must let the standby
take over within seconds, and the hierarchy must keep syncing through it.
"""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

ENTRIES = 1500
SEED = 11
TIMEOUT = 120


class Standby(harness.Site):
    """A second daemon of an existing site: same code, certificate and
    database; its own port, control socket, state and log."""

    def __init__(self, h, primary):
        self.h = h
        self.real = primary.code
        self.code = primary.code + "-B"      # harness key and log name only
        self.parent = primary.parent
        self.dbname = primary.dbname
        self.dir = os.path.join(h.root, "sites", self.code)
        self.state_dir = os.path.join(self.dir, "state")
        self.conf = os.path.join(self.dir, "sitesync.conf")
        self.control = os.path.join(self.dir, "control.sock")
        self.sync_log = os.path.join(self.dir, "sync.log")
        self.logfile = os.path.join(self.dir, "sitesyncd.log")
        self.upstream = primary.upstream
        self.extra = {}
        self.portlock = harness.PortLock()
        self.port = self.portlock.port
        self.proc = None
        self.unclean = []
        self.starts = 0
        os.makedirs(self.state_dir)
        self.write_config()
        h.sites[self.code] = self

    def config_sections(self):
        sec = super().config_sections()
        c = self.h.certs
        sec["site"]["code"] = self.real
        sec["tls"] = {"ca": c.ca, "cert": c.cert(self.real), "key": c.key(self.real)}
        return sec


def log_has(site, pattern):
    with open(site.logfile) as f:
        return re.search(pattern, f.read()) is not None


def status_version(site):
    """The site's own catalog_version as it reports it, or None meanwhile."""
    try:
        return site.status_json()["sites"][0]["catalog_version"]
    except (RuntimeError, ValueError, KeyError, IndexError):
        return None


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    h.gen_catalog(catalog, ENTRIES, 1, SEED)

    a = h.add_site("CAS", upstream="file://" + catalog)
    a.start()
    wait_for(lambda: log_has(a, r"active writer for site CAS"), 20, "A to become the active writer")
    b = Standby(h, a)
    b.start(writer=False)
    time.sleep(2.5)     # several lock attempts: B must stay a standby while A lives
    check(not log_has(b, r"active writer for site CAS"),
          "B became the active writer while A holds the lock")

    p01 = h.add_site("P01", parent=a, listen=False,
                     extra={"parent": {"address": "127.0.0.1:%d, 127.0.0.1:%d" % (a.port, b.port)}})
    a.cli_ok("child", "add", "P01")
    p01.start()

    a.cli_ok("sync", "--yes")
    h.wait_converged(a, [p01], TIMEOUT, "version 1 to reach P01 through A")

    rc, out, err = b.cli("sync", "--yes")
    check(rc == 2 and "standby" in (out + err),
          "sync at the standby should be refused (exit 2, 'standby'), got %d: %s%s" % (rc, out, err))
    wait_for(lambda: status_version(b) == 1, 20,
             "the standby to follow version 1 committed by A")

    t0 = time.monotonic()
    a.kill()
    wait_for(lambda: log_has(b, r"active writer for site CAS"), 30, "B to take over the writer lock")
    log("standby took over %.1fs after the active daemon was killed" % (time.monotonic() - t0))

    h.gen_catalog(catalog, ENTRIES, 2, SEED)
    b.cli_ok("sync", "--yes")
    wait_for(lambda: b.catalog_state()[0] == 2, TIMEOUT, "B to commit version 2")
    h.wait_converged(b, [p01], TIMEOUT, "version 2 to reach P01 through B")
    log("P01 holds version 2 after failing over to B")

    # The old active daemon comes back as a standby.
    a.start(writer=False)
    time.sleep(2.5)
    rc, out, err = a.cli("sync", "--yes")
    check(rc == 2 and "standby" in (out + err),
          "the restarted A should be a standby, sync gave %d: %s%s" % (rc, out, err))


if __name__ == "__main__":
    harness.main(test, "ha")
