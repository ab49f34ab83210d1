#!/usr/bin/env python3
"""Upstream sync at the top site over real HTTPS (DESIGN section 2).

        upstream (HTTPS on loopback, the hierarchy CA)
           |
          CAS ── P01 ── S01

Every expected count and id set is computed here from the generated XML
(xml.etree), never taken from sitesync: first sync, a 304 re-sync, a
changed catalog (added / changed / removed / expired), a product
selected and deselected again, a .cab catalog, three bad catalogs
(truncated, malformed, billion laughs) that must leave everything as it
was, import-update of an entry outside the selection (at every site, and
kept by the next sync), and the purge of long-expired entries. A second
top (CAF) reads a file:// catalog: an unchanged file is not parsed, a file
changed under the same size and modification time still is (SHA-256), and
`sync --full` or a changed expiry setting parse it again.
"""

import calendar
import datetime
import hashlib
import json
import re
import os
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import ssl

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for, NotYet  # noqa: E402

ENTRIES = 1500
SEED = 11
TIMEOUT = 180


# ---------------------------------------------------------------------------
# The upstream: HTTPS, ETag / If-None-Match, and a record of what it answered.

class Upstream:
    def __init__(self, cert, key):
        self.files = {}             # path -> bytes
        self.answers = []           # (path, status) per request
        self.lock = threading.Lock()
        self.gate = threading.Event()   # cleared: hold every answer
        self.gate.set()
        self.waiting = 0                # requests held at the gate
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                with up.lock:
                    up.waiting += 1
                up.gate.wait(120)
                with up.lock:
                    up.waiting -= 1
                    body = up.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    up.record(self.path, 404)
                    return
                etag = '"%s"' % hashlib.sha1(body).hexdigest()
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    up.record(self.path, 304)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.end_headers()
                self.wfile.write(body)
                up.record(self.path, 200)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def record(self, path, status):
        with self.lock:
            self.answers.append((path, status))

    def put(self, path, body):
        with self.lock:
            self.files[path] = body

    def url(self, path):
        return "https://127.0.0.1:%d%s" % (self.port, path)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


# ---------------------------------------------------------------------------
# The catalog as Python reads it, and the catalog sitesync must make of it.

def local(tag):
    return tag.rsplit("}", 1)[-1]


def parse_catalog(data):
    """{id: {"products", "xml", "supersedes"}} from catalog bytes."""
    root = ET.fromstring(data)
    out = {}
    for pkg in root:
        if local(pkg.tag) != "SoftwareDistributionPackage":
            continue
        e = {"products": set(), "supersedes": [], "xml": ET.tostring(pkg)}
        for el in pkg.iter():
            name = local(el.tag)
            if name == "Properties":
                e["id"] = el.get("PackageID").lower()
                e["date"] = el.get("CreationDate") or ""
            elif name == "ProductName":
                e["products"].add(el.text)
        for sp in pkg:
            if local(sp.tag) == "SupersededPackages":
                e["supersedes"] = [p.text.lower() for p in sp.iter()
                                   if local(p.tag) == "PackageID"]
        out[e["id"]] = e
    return out


def months_ago(n):
    """YYYY-MM-DD n months before today, the day clamped to the month's end."""
    t = datetime.date.today()
    y, m = divmod(t.year * 12 + t.month - 1 - n, 12)
    m += 1
    last = calendar.monthrange(y, m)[1]
    return "%04d-%02d-%02d" % (y, m, min(t.day, last))


def want_catalog(cat, product=None, imported=(), months=0):
    """{id: (xml, expired)} sitesync must hold: the selection, expiry after
    `months` (supersede_expire_months; -1 never), plus imported ids (never
    expired unless they are in the selection, where the rule applies)."""
    sel = {i: e for i, e in cat.items() if product is None or product in e["products"]}
    superseded = set()
    cutoff = months_ago(months) if months > 0 else None
    for i, e in sel.items():
        if months < 0:
            break
        if cutoff and not (re.match(r"\d{4}-\d{2}-\d{2}", e["date"]) and e["date"][:10] <= cutoff):
            continue
        superseded.update(s for s in e["supersedes"] if s != i)
    res = {i: (e["xml"], i in superseded) for i, e in sel.items()}
    for i, (xml, exp) in imported:
        res.setdefault(i, (xml, exp))
    return res


def expected_counts(old, new):
    added = set(new) - set(old)
    removed = set(old) - set(new)
    changed = {i for i in set(old) & set(new) if old[i] != new[i]}
    expired = {i for i in new if new[i][1] and not (i in old and old[i][1])}
    return len(added), len(changed), len(removed), len(expired)


# ---------------------------------------------------------------------------

def generate(h, rnd, entries=ENTRIES, seed=SEED):
    out = h.path("upstream", "r%d-s%d.xml" % (rnd, seed))
    h.gen_catalog(out, entries, rnd, seed)
    with open(out, "rb") as f:
        return out, f.read()


def version_row(site, v):
    out = site.sql("SELECT added, changed, removed, expired FROM catalog_versions "
                   "WHERE version = %d" % v)
    check(out, "%s has no catalog_versions row for %d" % (site.code, v))
    return tuple(int(x) for x in out.split("|"))


def ids_of(site, where="true"):
    out = site.sql("SELECT update_id FROM updates WHERE %s" % where)
    return set(out.split()) if out else set()


def sync_log_since(site, mark):
    return harness.file_since(site.sync_log, mark)


def sync_log_mark(site):
    return harness.file_mark(site.sync_log)


def run_sync(site, *flags):
    """Start a sync and wait for its end line; return the log it wrote."""
    mark = sync_log_mark(site)
    site.cli_ok("sync", "--yes", *flags)

    def ended():
        text = sync_log_since(site, mark)
        if "Sync finished" in text or "Sync failed" in text:
            return text
        raise NotYet("sync log so far: %r" % text[-300:])
    return wait_for(ended, TIMEOUT, "%s's sync to end" % site.code)


def set_setting(site, key, value):
    site.sql("INSERT INTO settings VALUES ('%s', '%s') "
             "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value" % (key, value))


def expect_sync(site, old, new, what, *flags):
    """A successful sync from `old` to `new`: counts, ids, expired ids."""
    before = site.catalog_state()
    text = run_sync(site, *flags)
    check("Sync finished" in text, "%s: sync failed: %s" % (what, text))
    for phase in ("Starting sync", "Download:", "Parse:", "Filter:", "Diff:"):
        check(phase in text, "%s: sync log lacks %r:\n%s" % (what, phase, text))
    st = site.catalog_state()
    check(st[0] == before[0] + 1, "%s: version %d after %d" % (what, st[0], before[0]))
    want = expected_counts(old, new)
    got = version_row(site, st[0])
    check(got == want, "%s: (added, changed, removed, expired) = %r, computed %r"
          % (what, got, want))
    check(ids_of(site) == set(new), "%s: update ids differ from the computed set" % what)
    exp = {i for i, (_, e) in new.items() if e}
    check(ids_of(site, "expired") == exp, "%s: expired ids differ (%d held, %d computed)"
          % (what, len(ids_of(site, "expired")), len(exp)))
    check(st[2] == len(new), "%s: catalog_state entries %d, want %d" % (what, st[2], len(new)))
    bad = site.sql("SELECT count(*) FROM updates "
                   "WHERE entry_hash <> sha256(int4send(revision) || content)")
    check(bad == "0", "%s: %s rows whose entry_hash is not sha256(revision || content)"
          % (what, bad))
    log("%s: version %d, %r (added, changed, removed, expired)" % (what, st[0], got))
    return st


def expect_refused(site, up, body, what, needle):
    """A bad catalog: the sync fails with a clear error; nothing changes."""
    before_state, before_fp = site.catalog_state(), site.fingerprint()
    up.put("/catalog.xml", body)
    text = run_sync(site)
    check("Sync failed" in text, "%s: sync did not fail:\n%s" % (what, text))
    line = [ln for ln in text.splitlines() if "Sync failed" in ln][0]
    check(needle.lower() in line.lower(), "%s: error %r lacks %r" % (what, line, needle))
    check(site.catalog_state() == before_state, "%s: catalog_state moved" % what)
    check(site.fingerprint() == before_fp, "%s: rows changed" % what)
    log("%s: refused (%s)" % (what, line.split("Sync failed:", 1)[-1].strip()[:120]))


def test(h):
    os.makedirs(h.path("upstream"))
    h.certs.site("UPS")     # the upstream's certificate, from the hierarchy CA
    up = Upstream(h.certs.cert("UPS"), h.certs.key("UPS"))
    try:
        run(h, up)
    finally:
        up.close()
    run_file(h)


def run(h, up):
    _, r1 = generate(h, 1)
    up.put("/catalog.xml", r1)
    cas = h.add_site("CAS", upstream=up.url("/catalog.xml"),
                     extra={"upstream": {"ca": h.certs.ca}})
    p01 = h.add_site("P01", parent=cas)
    s01 = h.add_site("S01", parent=p01, listen=False)
    h.start_tree(cas, p01, s01)

    # 1. First sync: version 1 with every generated entry.
    cat1 = parse_catalog(r1)
    held = want_catalog(cat1)
    st = expect_sync(cas, {}, held, "first sync")
    check(st[0] == 1 and st[2] == len(cat1), "first sync made %r for %d entries" % (st, len(cat1)))
    check(any(e for _, e in held.values()), "round 1 has no superseded entry to expire")

    # 2. Unchanged: a conditional request answered 304, no new version.
    n = len(up.answers)
    text = run_sync(cas)
    check("not modified" in text, "unchanged re-sync log:\n%s" % text)
    check(up.answers[n:] == [("/catalog.xml", 304)], "upstream answered %r" % up.answers[n:])
    check(cas.catalog_state() == st, "unchanged re-sync moved the catalog")
    log("unchanged: upstream answered 304, version stays 1")

    # 3. A changed catalog: exact counts.
    _, r2 = generate(h, 2)
    up.put("/catalog.xml", r2)
    cat2 = parse_catalog(r2)
    new = want_catalog(cat2)
    counts = expected_counts(held, new)
    check(all(counts), "round 2 lacks a kind of change: %r" % (counts,))
    expect_sync(cas, held, new, "round 2")
    held = new

    # 4. Selection: one product selected, then deselected again.
    product = sorted({p for e in cat2.values() for p in e["products"]})[0]
    cas.cli_ok("products", "select", product)
    new = want_catalog(cat2, product)
    check(0 < len(new) < len(held), "product %r selects %d of %d" % (product, len(new), len(held)))
    # It removes most of the catalog: confirmed, as [upstream]
    # max_removal_percent asks (test_selection covers the refusal).
    expect_sync(cas, held, new, "select %s" % product, "--allow-removal")
    held = new
    conv = h.wait_converged(cas, [p01, s01], TIMEOUT, "the selection at every site")
    check(ids_of(s01) == set(held), "S01 does not hold exactly the selected entries")
    log("S01 holds exactly the %d entries of %s (version %d)" % (len(held), product, conv[0]))

    # 5. import-update of an entry outside the selection, over HTTPS.
    outside = sorted(i for i, e in cat2.items() if product not in e["products"])[0]
    rc, out, err = p01.cli("import-update", "--from", up.url("/catalog.xml"), "--id", outside)
    check(rc != 0 and "top site" in (out + err), "import-update at P01: %d %s%s" % (rc, out, err))
    # While an upstream sync runs (its download held at the gate): refused.
    up.gate.clear()
    try:
        mark = sync_log_mark(cas)
        cas.cli_ok("sync", "--yes")
        wait_for(lambda: up.waiting > 0, 30, "the sync's download to reach the upstream")
        rc, out, err = cas.cli("import-update", "--from", up.url("/catalog.xml"), "--id", outside)
        check(rc != 0 and "upstream sync is running" in (out + err),
              "import-update during a sync: %d %s%s" % (rc, out, err))
    finally:
        up.gate.set()
    wait_for(lambda: "Sync finished" in sync_log_since(cas, mark), TIMEOUT, "the held sync to end")
    check(outside not in ids_of(cas), "the refused import changed the catalog")
    log("import-update refused while an upstream sync runs")
    v_before = cas.catalog_state()[0]
    out = cas.cli_ok("import-update", "--json", "--from", up.url("/catalog.xml"), "--id", outside)
    rep = json.loads(out)
    check(rep == {"update_id": outside, "revision": 1, "version": v_before + 1},
          "import-update replied %r" % rep)
    check(cas.sql("SELECT source FROM updates WHERE update_id = '%s'" % outside) == "imported",
          "imported update not marked imported")
    imported = [(outside, (cat2[outside]["xml"], False))]
    held = want_catalog(cat2, product, imported)
    h.wait_converged(cas, [p01, s01], TIMEOUT, "the imported update at every site")
    for s in (cas, p01, s01):
        check(outside in ids_of(s), "%s lacks the imported update" % s.code)
    log("import-update: %s (outside %s) at CAS, P01 and S01" % (outside, product))

    # The same again: nothing changed, so no new version.
    again = json.loads(cas.cli_ok("import-update", "--json", "--from", up.url("/catalog.xml"),
                                  "--id", outside))
    check(again == rep, "re-import replied %r, first import %r" % (again, rep))
    check(cas.catalog_state()[0] == rep["version"], "re-import made a version")

    # From a local file: a package of another vendor's catalog, by path.
    other_path, other = generate(h, 1, entries=30, seed=SEED + 1000)
    cat_other = parse_catalog(other)
    foreign = sorted(cat_other)[7]
    check(foreign not in cat2, "the other catalog shares ids with the upstream")
    rep = json.loads(cas.cli_ok("import-update", "--json", "--from", other_path, "--id",
                                foreign.upper()))
    check(rep == {"update_id": foreign, "revision": 1, "version": again["version"] + 1},
          "file import replied %r" % rep)
    rc, out, err = cas.cli("import-update", "--from", other_path, "--id",
                           "00000000-0000-4000-8000-000000000000")
    check(rc != 0 and "not in the catalog" in (out + err), "import of a missing id: %d %s%s"
          % (rc, out, err))
    imported.append((foreign, (cat_other[foreign]["xml"], False)))
    held = want_catalog(cat2, product, imported)
    h.wait_converged(cas, [p01, s01], TIMEOUT, "the file import at every site")
    check(ids_of(s01) == set(held), "S01 ids after the imports differ from the computed set")
    log("import-update from a file: %s; a missing id is refused" % foreign)

    # The next sync (selection unchanged, catalog changed) keeps it.
    _, r3 = generate(h, 3)
    up.put("/catalog.xml", r3)
    cat3 = parse_catalog(r3)
    # Outside the selection, the upstream sync leaves the imported row as it is.
    new = want_catalog(cat3, product, imported)
    expect_sync(cas, held, new, "round 3 after import")
    check(outside in ids_of(cas), "round 3 removed the imported update")
    held = new

    # 6. Deselect: everything is back, the imported entry joins the selection.
    cas.cli_ok("products", "deselect", product)
    new = want_catalog(cat3, None, imported)
    expect_sync(cas, held, new, "deselect %s" % product)
    held = new

    # 7. A .cab catalog (gcab, MSZIP).
    cab_src, r4 = generate(h, 4)
    cab = h.path("upstream", "catalog.cab")
    p = subprocess.run(["gcab", "-c", "-z", "-n", cab, cab_src], capture_output=True, text=True)
    if p.returncode != 0:
        raise harness.TestFailure("gcab failed: %s" % p.stderr)
    with open(cab, "rb") as f:
        up.put("/catalog.cab", f.read())
    cas.stop()
    cas.upstream = up.url("/catalog.cab")
    cas.write_config()
    cas.start()
    new = want_catalog(parse_catalog(r4), None, imported)
    expect_sync(cas, held, new, "round 4 from a .cab")
    held = new
    cas.stop()
    cas.upstream = up.url("/catalog.xml")
    cas.write_config()
    cas.start()

    # 8. Bad catalogs change nothing.
    _, r5 = generate(h, 5)
    expect_refused(cas, up, r5[: len(r5) // 2], "truncated catalog", "cannot parse the catalog")
    bad = r5.replace(b"</sdp:Properties>", b"</sdp:Propertiez>", 1)
    check(bad != r5, "malformed catalog not made")
    expect_refused(cas, up, bad, "malformed catalog", "cannot parse the catalog")
    lol = (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
           + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
                      for i in range(1, 10))
           + b']>\n<smc:SystemsManagementCatalog xmlns:smc="http://schemas.microsoft.com/sms/'
             b'2005/04/CorporatePublishing/SystemsManagementCatalog.xsd">&lol9;'
             b'</smc:SystemsManagementCatalog>\n')
    expect_refused(cas, up, lol, "billion laughs", "entity declarations are refused")

    # 9. Purge: entries expired longer than purge_expired_days leave.
    up.put("/catalog.xml", r5)
    new = want_catalog(parse_catalog(r5), None, imported)
    expect_sync(cas, held, new, "round 5")
    held = new
    # supersede_expire_months: later, never, then at once again.
    cat5 = parse_catalog(r5)
    for months in (48, -1, 0):
        set_setting(cas, "supersede_expire_months", months)
        new = want_catalog(cat5, None, imported, months)
        if new == held:
            raise harness.TestFailure("months = %d changes nothing to check" % months)
        expect_sync(cas, held, new, "supersede_expire_months = %d" % months, "--full")
        held = new
    set_setting(cas, "purge_expired_days", 3)
    # Pretend the clock ran: half the expired entries expired 4 days ago.
    old_exp = sorted(i for i, (_, e) in held.items() if e)[::2]
    cas.sql("UPDATE update_expiry SET expired_at = now() - interval '4 days' "
            "WHERE update_id IN (%s)" % ",".join("'%s'" % i for i in old_exp))
    new = {i: v for i, v in held.items() if i not in set(old_exp) or i == outside}
    expect_sync_full(cas, held, new)
    held = new
    h.wait_converged(cas, [p01, s01], TIMEOUT, "the final catalog at every site")
    check(ids_of(s01) == set(held), "S01 does not hold exactly the computed entries")
    check(outside in ids_of(s01), "S01 lost the imported update")
    log("S01 holds exactly the %d computed entries" % len(held))


def same_size_edit(path):
    """Change one title letter in place, then put the modification time
    back: size and mtime say nothing changed."""
    st = os.stat(path)
    with open(path, "rb") as f:
        data = f.read()
    at = data.index(b"<sdp:Title>") + len(b"<sdp:Title>")
    ch = data[at:at + 1]
    check(ch.isalpha(), "title starts with %r" % ch)
    data = data[:at] + ch.swapcase() + data[at + 1:]
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    st2 = os.stat(path)
    check((st2.st_size, st2.st_mtime_ns) == (st.st_size, st.st_mtime_ns),
          "size or mtime moved: %r -> %r" % ((st.st_size, st.st_mtime_ns),
                                            (st2.st_size, st2.st_mtime_ns)))
    return data


def expect_not_parsed(site, what):
    """A re-sync answered from the fingerprint: no parse, same catalog."""
    before = site.catalog_state()
    text = run_sync(site)
    check("Sync finished" in text, "%s: sync failed: %s" % (what, text))
    check("not modified" in text and "SHA-256" in text and "Parse:" not in text,
          "%s: the catalog was parsed again:\n%s" % (what, text))
    check(site.catalog_state() == before, "%s: the catalog moved" % what)
    log("%s: not parsed, version stays %d" % (what, before[0]))


def run_file(h):
    path, data = generate(h, 1, entries=300, seed=SEED + 7)
    caf = h.add_site("CAF", upstream="file://" + path)
    caf.start()
    held = want_catalog(parse_catalog(data))
    expect_sync(caf, {}, held, "file:// first sync")
    expect_not_parsed(caf, "file:// unchanged")

    # Same bytes, new modification time: still not parsed.
    os.utime(path)
    expect_not_parsed(caf, "file:// touched")

    # Different bytes, same size and modification time: parsed.
    data = same_size_edit(path)
    new = want_catalog(parse_catalog(data))
    check(expected_counts(held, new) == (0, 1, 0, 0), "the edit changes %r"
          % (expected_counts(held, new),))
    expect_sync(caf, held, new, "file:// same size and mtime, one title changed")
    held = new
    expect_not_parsed(caf, "file:// unchanged after the edit")

    # --full parses the same bytes again (and finds nothing to change).
    before = caf.catalog_state()
    text = run_sync(caf, "--full")
    check("Parse:" in text and "Catalog unchanged" in text, "sync --full:\n%s" % text)
    check(caf.catalog_state() == before, "sync --full of the same file moved the catalog")
    log("file:// sync --full: parsed again, version stays %d" % before[0])

    # A setting the result depends on: parsed again without --full.
    set_setting(caf, "supersede_expire_months", -1)
    new = want_catalog(parse_catalog(data), months=-1)
    expect_sync(caf, held, new, "file:// supersede_expire_months = -1")
    expect_not_parsed(caf, "file:// unchanged with the new setting")
    caf.stop()


def expect_sync_full(cas, held, new):
    """The purge sync: the catalog is unchanged upstream, so --full."""
    before = cas.catalog_state()
    text = run_sync(cas, "--full")
    check("Sync finished" in text, "purge sync failed: %s" % text)
    st = cas.catalog_state()
    check(st[0] == before[0] + 1, "purge made no version")
    got = version_row(cas, st[0])
    want = expected_counts(held, new)
    check(got == want and want[2] > 0, "purge: %r, computed %r" % (got, want))
    check(ids_of(cas) == set(new), "purge: ids differ from the computed set")
    # Purged entries stay out while they remain expired upstream.
    text = run_sync(cas, "--full")
    check(cas.catalog_state() == st, "purged entries came back: %r" % (cas.catalog_state(),))
    log("purge: %d entries purged, and they stay out" % want[2])


if __name__ == "__main__":
    harness.main(test, "upstream")
