#!/usr/bin/env python3
"""Microsoft Update / WSUS as the upstream ([MS-WSUSSS]), from the loopback
server in tests/wsus_upstream.py (recorded exchanges + synthesised members
and categories).

        wsus_upstream (HTTP on loopback)
           |
          CAS ── P01 ── S01

1. Nothing selected: the sync stores Microsoft's categories; `products list`
   and `classifications list` show their real names, grouped under the
   vendor.
2. Defender Antivirus x Definition Updates selected, with the recorded
   faults injected: InvalidCookie once (re-authenticate, retry), a 503 once
   (backoff, retry), and InternalServerError for any batch naming one member
   of KB2267602 (the batch is split until that id stands alone, skipped,
   and the bundle is held back naming it). Everything else is published.
3. The fault gone: the next sync lists everything again (no anchor was
   kept), fetches only the bundle and its missing member, and KB2267602
   revision 200 reaches S01 with title, KB, classification, bundled and
   superseded ids, its update XML byte-identical to the recorded document;
   `where` finds it at every site.
4. Delta: an unchanged upstream asks GetUpdateData for nothing; after two
   updates change upstream, only those two are asked for.
5. A refused anchor (InvalidParameters) falls back to a full list.
6. Faults that cannot be handled fail the sync and change nothing: an
   InvalidCookie that re-authenticating does not cure (its ErrorCode in
   the sync log and `status`), and an authorization service URL on another
   host (never followed). The URL now carries credentials: every message,
   `status` and `history` show it redacted.
"""

import json
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import harness  # noqa: E402
import wsus_upstream as wu  # noqa: E402
from harness import check, log, pb_decode  # noqa: E402
from test_upstream import run_sync  # noqa: E402

TIMEOUT = 180
MEMBER = "90f961a9-1756-4493-aade-644c37589961"   # first member of KB2267602


def ids(site, where="true"):
    out = site.sql("SELECT update_id FROM updates WHERE %s ORDER BY update_id" % where)
    return set(line for line in out.split("\n") if line)


def content(site, uid):
    """The stored UpdateContent of one update, decoded (field -> [values])."""
    hexed = site.sql("SELECT encode(content, 'hex') FROM updates WHERE update_id = '%s'" % uid)
    check(hexed, "%s does not hold %s" % (site.code, uid))
    fields = {}
    for num, _wt, val in pb_decode(bytes.fromhex(hexed)):
        fields.setdefault(num, []).append(val)
    return fields


def text(fields, num):
    return [v.decode("utf-8") for v in fields.get(num, [])]


def with_upstream(h, body):
    """body(h, up) with the loopback WSUS upstream up running (needs gcab)."""
    if shutil.which("gcab") is None:
        raise harness.Skip("gcab (the test upstream's Cabinet tool) is not installed")
    up = wu.WsusUpstream().start()
    try:
        body(h, up)
    finally:
        up.stop()


def test(h):
    with_upstream(h, body)


def body(h, up):
    cas = h.add_site("CAS", upstream=up.url, extra={"upstream": {"kind": "wsus"}})
    p01 = h.add_site("P01", parent=cas)
    s01 = h.add_site("S01", parent=p01, listen=False)
    h.start_tree(cas, p01, s01)

    # 1. Categories only.
    out = run_sync(cas)
    check("Sync finished" in out, "category sync failed: %s" % out)
    check("select at least one product and one classification" in out,
          "the sync log should say why no update list was asked for:\n%s" % out)
    prods = json.loads(cas.cli_ok("products", "list", "--json"))
    blob = json.dumps(prods)
    check("Microsoft Defender Antivirus" in blob, "products list lacks the Defender name: %s" % blob)
    row = cas.sql("SELECT title, parent_id FROM categories WHERE kind = 'product' AND id = '%s'"
                  % wu.DEFENDER)
    check(row == "Microsoft Defender Antivirus|Microsoft",
          "Defender product row is %r, want its name under the vendor Microsoft" % row)
    item = [x for x in prods["items"] if x["id"] == wu.DEFENDER]
    check(item and item[0]["title"] == "Microsoft Defender Antivirus" and
          item[0]["group"] == "Microsoft", "products list --json: %r" % item)
    table = cas.cli_ok("products", "list")
    line = [ln for ln in table.splitlines() if wu.DEFENDER in ln]
    check(line and "Microsoft Defender Antivirus" in line[0] and line[0].rstrip().endswith("Microsoft"),
          "products list does not show Defender under its vendor:\n%s" % table)
    check(cas.sql("SELECT title FROM categories WHERE kind = 'vendor' AND id = 'Microsoft'")
          == "Microsoft", "the vendor Microsoft is not stored")
    classes = cas.cli_ok("classifications", "list")
    check("Definition Updates" in classes, "classifications list lacks Definition Updates:\n%s"
          % classes)
    check(ids(cas) == set(), "nothing selected, yet updates were stored")
    log("categories: Microsoft's names stored, grouped under the vendor")

    # 2. Selected, with the recorded faults injected.
    cas.cli_ok("products", "select", wu.DEFENDER)
    cas.cli_ok("classifications", "select", wu.DEFINITIONS)
    up.fail_ids = {MEMBER}
    up.invalid_cookie = 1
    up.transient = 1
    out = run_sync(cas)
    check("Sync finished" in out, "faulted sync failed: %s" % out)
    check("InvalidCookie" in out, "the re-authentication is not in the sync log:\n%s" % out)
    check("Skipped update %s" % MEMBER in out and "InternalServerError" in out,
          "the skipped id and its fault are not in the sync log:\n%s" % out)
    check("Held back bundle %s: its member %s" % (wu.KB2267602, MEMBER) in out,
          "the held-back bundle is not named with its member:\n%s" % out)
    held = ids(cas)
    check(wu.KB2267602 not in held and MEMBER not in held,
          "the bundle with a missing member was published")
    for uid in up.updates:
        if uid != wu.KB2267602:
            check(uid in held, "listed update %s not published" % uid)
    check(wu.LEAF in held, "a member of the bundle (the recorded leaf) is missing")
    check(up.requests.count("GetCookie") >= 2, "no re-authentication after InvalidCookie")
    log("faults: InvalidCookie, 503 and a faulting member handled; %d entries" % len(held))

    # 3. The fault gone: only what is missing is fetched.
    up.fail_ids = set()
    up.data_ids = []
    out = run_sync(cas)
    check("Sync finished" in out, "sync after the fault failed: %s" % out)
    fetched = set(up.data_ids)
    check(wu.KB2267602 in fetched and MEMBER in fetched,
          "the bundle and its member were not fetched again: %r" % sorted(fetched))
    check(wu.LEAF not in fetched, "a member already held was fetched again")
    check(len(fetched) <= 3, "fetched %d documents, want only the missing ones: %r"
          % (len(fetched), sorted(fetched)))
    h.wait_converged(cas, [p01, s01], TIMEOUT, "the tree to hold KB2267602")
    f = content(s01, wu.KB2267602)
    want_xml = up.blob_xml(wu.KB2267602)
    check(text(f, 19) == [want_xml], "S01's stored update XML differs from the recorded document")
    check(text(f, 2)[0].startswith("Security Intelligence Update for Microsoft Defender "
                                   "Antivirus - KB2267602"), "title: %r" % text(f, 2))
    check(text(f, 9) == ["2267602"], "KB: %r" % text(f, 9))
    check(text(f, 6) == [wu.DEFINITIONS], "classification: %r" % text(f, 6))
    check(text(f, 5) == [wu.DEFENDER], "products: %r" % text(f, 5))
    bundled = re.findall(r'UpdateID="([0-9a-f-]+)" RevisionNumber="200"', want_xml)[1:]
    check(text(f, 15) == bundled and len(bundled) == 124, "bundled: %d ids" % len(text(f, 15)))
    sup = re.search(r"<upd:SupersededUpdates>(.*?)</upd:SupersededUpdates>", want_xml).group(1)
    check(text(f, 13) == re.findall(r'UpdateID="([0-9a-f-]+)"', sup), "superseded: %r" % text(f, 13))
    check(f.get(23) == [200], "upstream revision: %r" % f.get(23))
    check(text(f, 24) == ["Software"], "update type: %r" % text(f, 24))
    check(text(f, 12) == ["2026-10-04T12:00:58Z"], "date not UTC-normalised: %r" % text(f, 12))
    for s in (cas, p01, s01):
        w = s.cli_ok("where", wu.KB2267602)
        check("S01" in w, "%s: `where` does not find KB2267602 at S01:\n%s" % (s.code, w))
    leaf = content(s01, wu.LEAF)
    files = leaf.get(16, [])
    check(len(files) == 1, "the leaf has %d files" % len(files))
    ff = {n: v for n, _w, v in pb_decode(files[0])}
    check(ff.get(3) == b"h/W9BGlYUAaqXTp30cZi/SiV3c0=" and
          ff.get(4) == b"Amt0qymy5KsROiwIXm4QIIV75Ju4r+Cl28Pg8gaLXUA=", "leaf digests: %r" % ff)
    check(ff.get(5, b"").startswith(b"http://download.windowsupdate.com/c/msdownload/update/"
                                    b"software/defu/2026/10/am_delta_"), "leaf URL: %r" % ff.get(5))
    log("KB2267602 r200 at S01: title, KB, classification, %d bundled, XML byte-identical"
        % len(bundled))

    # 4. Delta.
    up.data_ids = []
    before = cas.catalog_state()
    out = run_sync(cas)
    check("Sync finished" in out and "delta list" in out, "delta sync: %s" % out)
    check(up.data_ids == [], "an unchanged upstream was asked for %d documents" % len(up.data_ids))
    check(cas.catalog_state() == before, "an unchanged upstream changed the catalog")
    changed = [up.updates[0], up.updates[1]]
    up.bump(changed)
    out = run_sync(cas)
    check("Sync finished" in out, "delta sync after a change: %s" % out)
    check(sorted(up.data_ids) == sorted(changed), "a changed upstream was asked for %r, want %r"
          % (up.data_ids, changed))
    for uid in changed:
        check(content(cas, uid).get(23) == [up.docs[uid].rev], "%s not at its new revision" % uid)
    check(ids(cas) == held | {wu.KB2267602, MEMBER}, "the delta lost or added entries")
    log("delta: nothing asked for when unchanged, only the 2 changed updates after a change")

    # 5. A refused anchor: full list, nothing fetched that is held.
    up.refuse_anchors = {cas.sql("SELECT value FROM settings WHERE key = 'wsus_anchor'")}
    up.data_ids = []
    out = run_sync(cas)
    check("Sync finished" in out and "refused the anchor" in out and "full list" in out,
          "refused anchor: %s" % out)
    check(up.data_ids == [], "a full list after a refused anchor fetched held revisions: %r"
          % up.data_ids)
    log("refused anchor: full list, nothing re-fetched")

    # 5b. Prerequisites that are updates, not categories (documents name them
    # without a revision, so only a list can give one): one the site holds
    # and one listed with the update that needs it count as had; one that no
    # list names holds back the update needing it, named, like a bundle
    # with a missing member; an update held at an older revision keeps it;
    # everything else is published. Listed after all, it comes with both.
    a, b, c = up.updates[2], up.updates[3], up.updates[4]
    c_rev = content(cas, c).get(23)
    newp, newd, orphan, needy = ("9e9e9e9e-0000-4000-8000-00000000000%d" % i for i in range(1, 5))
    for uid in (newp, newd, orphan, needy):
        up.add_update(uid, 0, compressed=True)
    up.drop_update(orphan)
    up.require(a, b)
    up.require(newd, newp)
    up.require(needy, orphan)
    up.require(c, orphan)
    up.data_ids = []
    out = run_sync(cas)
    check("Sync finished" in out, "sync with prerequisites: %s" % out)
    for uid in (needy, c):
        check("Held back update %s: its prerequisite %s could not be had (no update list of "
              "the selection names it)" % (uid, orphan) in out,
              "the held-back update %s is not named with its prerequisite:\n%s" % (uid, out))
    check("0 bundles held back, 2 updates held back for a prerequisite" in out,
          "the WSUS line does not count them:\n%s" % out)
    now = ids(cas)
    check(needy not in now and orphan not in now, "an update without its prerequisite was published")
    check({a, b, newp, newd} <= now, "updates whose prerequisites were had are missing")
    check(content(cas, a).get(23) == [up.docs[a].rev], "%s not at its new revision" % a)
    c_now = content(cas, c).get(23) if c in now else "removed"
    check(c_now == c_rev, "%s held back: its held revision %r was not kept (%r)" % (c, c_rev, c_now))
    check(b not in up.data_ids and orphan not in up.data_ids,
          "fetched a held prerequisite or one no list names: %r" % up.data_ids)
    up.relist(orphan)
    out = run_sync(cas)
    check("Sync finished" in out and "Held back" not in out, "prerequisite listed: %s" % out)
    now = ids(cas)
    check({needy, orphan, c} <= now and content(cas, c).get(23) == [up.docs[c].rev],
          "with the prerequisite listed, %s, %s and %s at its new revision are not all held"
          % (orphan, needy, c))
    for uid in (orphan, needy):
        up.drop_update(uid)
    log("prerequisites: held and listed ones had; %s and %s held back for %s (the older "
        "revision of %s kept), then published with it" % (needy, c, orphan, c))

    # 6. Faults not handled: the sync fails, naming them, and changes nothing;
    # the upstream URL carries credentials, shown redacted everywhere.
    before = cas.catalog_state()
    secret = "s3cret-wsus-pw"
    shown = up.url.replace("http://", "http://***@", 1)
    cas.stop()
    cas.extra["upstream"]["url"] = up.url.replace("http://", "http://sync:%s@" % secret, 1)
    cas.write_config()
    cas.start()
    up.invalid_cookie = 2
    out = run_sync(cas)
    check("Sync failed: GetConfigData: SOAP fault InvalidCookie from %s" % shown in out,
          "a lasting InvalidCookie: %s" % out)
    st = cas.status_json()
    me = [x for x in st["sites"] if x["site"] == "CAS"][0]
    check("InvalidCookie" in (me.get("last_error") or ""), "status last_error: %r" % me)
    hist = cas.cli_ok("history", "--json", "--limit", "500")
    for what, text_ in (("the sync log", out), ("status", json.dumps(st)), ("history", hist)):
        check(secret not in text_, "%s shows the URL's password:\n%s" % (what, text_))
    check(cas.catalog_state() == before, "a failed sync changed the catalog")
    up.invalid_cookie = 0
    up.service_url = "http://elsewhere.invalid/DssAuthWebService/DssAuthWebService.asmx"
    out = run_sync(cas)
    check("Sync failed: GetAuthConfig: authorization service %s is not on %s"
          % (up.service_url, shown) in out, "foreign DSS URL: %s" % out)
    check(cas.catalog_state() == before, "a refused sync changed the catalog")
    up.service_url = None
    log("unhandled faults: the sync fails naming them, nothing changed")

    # 7. max_document (the minimum, 64 KiB): one answer over 8 x 64 KiB, then a
    # compressed document that decodes to more than 64 KiB.
    cas.stop()
    cas.extra["upstream"]["max_document"] = "65536"
    cas.write_config()
    cas.start()
    big = "b16b16b1-0000-4000-8000-000000000001"
    up.add_update(big, 700000, compressed=False)
    out = run_sync(cas)
    check("Sync failed: %s/ServerSyncWebService/ServerSyncWebService.asmx: the answer is over "
          "524288 bytes (8 x [upstream] max_document)" % shown in out, "answer cap: %s" % out)
    check(secret not in out, "the sync log shows the URL's password:\n%s" % out)
    check(cas.catalog_state() == before and big not in ids(cas), "an over-long answer changed the catalog")
    up.drop_update(big)
    big2 = "b16b16b1-0000-4000-8000-000000000002"
    up.add_update(big2, 200000, compressed=True)
    out = run_sync(cas)
    check("compressed update blob: member of " in out and
          "bytes is over the limit ([upstream] max_document) (update %s)" % big2 in out,
          "decoded document cap: %s" % out)
    check(cas.catalog_state() == before and big2 not in ids(cas),
          "an over-long document changed the catalog")
    log("max_document: an over-long answer and an over-long document each fail the sync")


if __name__ == "__main__":
    harness.main(test, "wsus")
