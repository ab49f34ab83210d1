#!/usr/bin/env python3
"""A child accepts only the parent it is configured for (issue 15 #7).

    CAS (top, approves S01)      S01: [parent] address = CAS's port,
                                      [parent] code = P01

CAS holds a valid certificate of the hierarchy and has approved S01, so
every other check passes; only the certificate's site (CAS) differs from
[parent] code (P01). S01 must refuse it before saying Hello, with the exact
message, and nothing may change: CAS never sees S01 connect (no status
row, no PullRequest), S01 holds no catalog and learns no top version.
Then: sitesyncd refuses to start a child config without [parent] code, and
one below the top without [trust] public_key (unless allow_unsigned).
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

ENTRIES = 50
TIMEOUT = 60


def check_config(h, site, drop):
    """sitesyncd --check-config on site's config without the (section, key)s in drop."""
    path = site.conf + ".check"
    lines, section = [], None
    for line in open(site.conf):
        m = re.match(r"^\[(\w+)\]", line)
        if m:
            section = m.group(1)
        m = re.match(r"^(\w+)\s*=", line)
        if m and (section, m.group(1)) in drop:
            continue
        lines.append(line)
    with open(path, "w") as f:
        f.writelines(lines)
    p = subprocess.run([h.sitesyncd, "-c", path, "--check-config"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    h.gen_catalog(catalog, ENTRIES, 1, 3)
    cas = h.add_site("CAS", upstream="file://" + catalog)
    s01 = h.add_site("S01", parent=cas, listen=False, extra={"parent": {"code": "P01"}})
    cas.start()
    cas.cli_ok("child", "add", "S01")
    cas.cli_ok("sync", "--yes")
    wait_for(lambda: cas.catalog_state()[0] or None, TIMEOUT, "CAS version 1")

    cmark = cas.log_mark()
    s01.start()
    want = ("refusing parent at 127.0.0.1:%d: its certificate says site CAS, "
            "but [parent] code is P01" % cas.port)
    wait_for(lambda: want in s01.log_text(), TIMEOUT, "S01 to refuse CAS as its parent")
    time.sleep(3)       # a few reconnect attempts (reconnect_max 2 s)
    n = s01.log_text().count(want)
    check(n >= 2, "S01 refused only %d time(s): it should keep retrying with backoff" % n)
    log("S01: %s (%d times)" % (want, n))
    check(s01.catalog_state()[0] == 0, "S01 took a catalog: %r" % (s01.catalog_state(),))
    doc = s01.status_json()
    check(doc.get("top_version", 0) == 0, "S01 learned top version %r" % doc.get("top_version"))
    own = [r for r in doc["sites"] if r["site"] == "S01"][0]
    check(own.get("parent") == "P01", "S01's row names parent %r" % own.get("parent"))
    check("Connected to parent" not in s01.log_text(), "S01 connected to CAS")
    ctext = cas.log_since(cmark)
    check("Child site S01 connected" not in ctext and "pull from version" not in ctext,
          "CAS saw S01's Hello or PullRequest:\n%s" % ctext[-2000:])
    # CAS lists its approved child, but never heard from it.
    row = [r for r in cas.status_json()["sites"] if r["site"] == "S01"][0]
    check(row.get("reported_at") is None and row.get("link") != "active",
          "CAS heard from S01: %r" % row)
    log("nothing reached CAS; S01 holds nothing")

    rc, out = check_config(h, s01, {("parent", "code")})
    check(rc != 0 and "[parent] code is required when [parent] address is set" in out,
          "a child config without [parent] code: exit %d, %r" % (rc, out))
    rc, out = check_config(h, s01, {("trust", "allow_unsigned")})
    check(rc != 0 and "[trust] public_key is required below the top site" in out,
          "a child config without public_key or allow_unsigned: exit %d, %r" % (rc, out))
    rc, out = check_config(h, s01, set())
    check(rc == 0, "S01's own config fails --check-config: %r" % out)
    log("configs without [parent] code or [trust] public_key are refused at start")


if __name__ == "__main__":
    harness.main(test, "parent_pin")
