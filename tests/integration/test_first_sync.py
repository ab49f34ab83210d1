#!/usr/bin/env python3
"""A first sync into an empty catalog writes its entries straight into
`updates` as it parses (upstream/first.c), holding the last 2,048 packages
back so that a supersedence seen meanwhile is applied before writing;
expiry found further apart is amended afterwards. It must make exactly
the catalog the staged path makes.

For each case two file:// tops sync the same catalog with the same
settings: one the default way, one with SITESYNC_INGEST_STAGED=1 (stage,
then diff and insert). Every row (content, hash, flags), the version
rows, the change log, the categories and the expiry clock must be equal,
and the expired ids must be those computed here from the XML.

The catalog: round 3 of the generator (updates and new packages that
supersede others, some more than 2,048 packages back, some close by), plus
a duplicated id (the first wins), a package that names a superseded id in
upper case and itself, and one superseded before it appears.

Cases: everything selected with immediate expiry; a product and a
language selected with expiry after 36 months; expiry off; and a
selection that changes under the sync (a trigger selects a product as
the sync records it), which the direct path must notice, roll back and
leave to the staged path.
"""

import os
import re
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log  # noqa: E402
from test_upstream import months_ago, run_sync, set_setting  # noqa: E402

ENTRIES = 6000
SEED = 23
WINDOW = 2048
PKG_RE = re.compile(rb"<smc:SoftwareDistributionPackage>.*?</smc:SoftwareDistributionPackage>",
                    re.S)
ID_RE = re.compile(rb'PackageID="([0-9a-fA-F-]{36})"')


def build_catalog(h):
    """The generated catalog plus the hand-made packages; its path and bytes."""
    src = h.gen_catalog(h.path("upstream", "gen.xml"), ENTRIES, 3, SEED)
    with open(src, "rb") as f:
        data = f.read()
    pkgs = PKG_RE.findall(data)
    check(len(pkgs) > 5000, "generator made %d packages" % len(pkgs))
    first_id = ID_RE.search(pkgs[3]).group(1)

    def retitle(p, word):
        return re.sub(rb"<sdp:Title>", b"<sdp:Title>" + word + b" ", p, count=1)

    def with_id(p, new_id, supersedes):
        p = ID_RE.sub(b'PackageID="' + new_id + b'"', p, count=1)
        p = re.sub(rb"<sdp:SupersededPackages>.*?</sdp:SupersededPackages>", b"", p)
        sup = b"".join(b"<sdp:PackageID>" + s + b"</sdp:PackageID>" for s in supersedes)
        return p.replace(b"<sdp:InstallableItem ",
                         b"<sdp:SupersededPackages>" + sup + b"</sdp:SupersededPackages>"
                         b"<sdp:InstallableItem ", 1)

    early = str(uuid.uuid5(uuid.NAMESPACE_DNS, "sitesync-first-early")).encode()
    late = str(uuid.uuid5(uuid.NAMESPACE_DNS, "sitesync-first-late")).encode()
    extra = [
        # The same id again, later and different: the first one stays.
        retitle(pkgs[10], b"DUPLICATE"),
        # Upper case and itself in its supersedes list.
        with_id(pkgs[20], late, [first_id.upper(), late.upper(), early]),
    ]
    # `early` appears after the package that supersedes it.
    extra.append(with_id(pkgs[30], early, []))
    end = data.rindex(b"</smc:SystemsManagementCatalog>")
    data = data[:end] + b"\n".join(extra) + b"\n" + data[end:]
    path = h.path("upstream", "catalog.xml")
    with open(path, "wb") as f:
        f.write(data)
    return path, data


def packages(data):
    """[(id, products, languages, date, supersedes)] in catalog order."""
    out = []
    for p in PKG_RE.findall(data):
        pid = ID_RE.search(p).group(1).decode().lower()
        products = set(x.decode() for x in re.findall(rb"<sdp:ProductName>(.*?)</sdp:ProductName>", p))
        langs = set(x.decode() for x in re.findall(rb"<sdp:Language>(.*?)</sdp:Language>", p))
        date = re.search(rb'CreationDate="([^"]*)"', p).group(1).decode()
        m = re.search(rb"<sdp:SupersededPackages>(.*?)</sdp:SupersededPackages>", p)
        sup = [x.decode().lower() for x in re.findall(rb"<sdp:PackageID>(.*?)</sdp:PackageID>",
                                                      m.group(1))] if m else []
        out.append((pid, products, langs, date, sup))
    return out


def expected_expired(pkgs, product=None, language=None, months=0):
    """Ids held and expired ids, by the rules of DESIGN §2 (first of an id wins)."""
    taken = {}
    for i, (pid, products, langs, date, sup) in enumerate(pkgs):
        if product and product not in products:
            continue
        if language and langs and language not in langs:
            continue
        taken.setdefault(pid, (i, date, sup))
    cutoff = months_ago(months) if months > 0 else None
    superseded = set()
    for pid, (i, date, sup) in taken.items():
        if months < 0:
            break
        if cutoff and not (re.match(r"\d{4}-\d{2}-\d{2}", date) and date[:10] <= cutoff):
            continue
        superseded.update(s for s in sup if s != pid)
    held = set(taken)
    return held, held & superseded


def distances(pkgs):
    """How far after an expired package its superseders come (catalog order)."""
    pos = {}
    for i, p in enumerate(pkgs):
        pos.setdefault(p[0], i)
    near = far = before = 0
    for i, (pid, _, _, _, sup) in enumerate(pkgs):
        for s in sup:
            if s in pos and s != pid:
                d = i - pos[s]
                if d < 0:
                    before += 1
                elif d < WINDOW:
                    near += 1
                else:
                    far += 1
    return near, far, before


def state(site):
    q = site.sql
    return {
        "rows": q("SELECT count(*) || ' ' || md5(string_agg(u::text, '|' ORDER BY update_id)) "
                  "FROM updates u"),
        "versions": q("SELECT string_agg(concat_ws(',', version, encode(digest, 'hex'), entries, "
                      "added, changed, removed, expired, full_pull), '|' ORDER BY version) "
                      "FROM catalog_versions"),
        "changes": q("SELECT count(*) || ' ' || md5(string_agg(version || update_id::text, ',' "
                     "ORDER BY version, update_id)) FROM changes"),
        "categories": q("SELECT md5(string_agg(concat_ws(',', kind, id, title, selected), '|' "
                        "ORDER BY kind, id)) FROM categories"),
        "expiry": q("SELECT count(*) || ' ' || md5(string_agg(update_id::text, ',' "
                    "ORDER BY update_id)) FROM update_expiry"),
    }


def ids(site, where):
    out = site.sql("SELECT update_id FROM updates WHERE %s" % where)
    return set(out.split()) if out else set()


SETUPS = {
    "all": dict(months=0),
    "selected": dict(months=36, product="Contoso PDF Reader", language="de"),
    "never": dict(months=-1),
    "changing": dict(months=0, product="Contoso PDF Reader", trigger="Fabrikam Office Suite"),
}


def prepare(site, case):
    cfg = SETUPS[case]
    set_setting(site, "supersede_expire_months", cfg["months"])
    if cfg.get("product"):
        site.sql("INSERT INTO categories (kind, id, title, selected) VALUES "
                 "('product', '%s', '%s', true)" % (cfg["product"], cfg["product"]))
    if cfg.get("language"):
        site.sql("INSERT INTO categories (kind, id, title, selected) VALUES "
                 "('language', '%s', '%s', true)" % (cfg["language"], cfg["language"]))
    if cfg.get("trigger"):
        # The selection changes while the sync runs: the product is
        # selected as the sync first records it.
        site.sql("CREATE FUNCTION ss_test_select() RETURNS trigger LANGUAGE plpgsql AS $$ "
                 "BEGIN IF NEW.kind = 'product' AND NEW.id = '%s' THEN NEW.selected := true; "
                 "END IF; RETURN NEW; END $$; "
                 "CREATE TRIGGER ss_test_select BEFORE INSERT ON categories "
                 "FOR EACH ROW EXECUTE FUNCTION ss_test_select()" % cfg["trigger"])


def test(h):
    path, data = build_catalog(h)
    pkgs = packages(data)
    near, far, before = distances(pkgs)
    check(near > 0 and far > 0 and before > 0,
          "the catalog must have supersedences near (%d), far (%d) and backwards (%d)"
          % (near, far, before))
    log("catalog: %d packages; supersedences within %d packages: %d, further: %d, "
        "backwards: %d" % (len(pkgs), WINDOW, near, far, before))

    for n, case in enumerate(SETUPS):
        cfg = SETUPS[case]
        tops = []
        for way in ("direct", "staged"):
            code = "%s%02d" % ("D" if way == "direct" else "S", n)
            site = h.add_site(code, upstream="file://" + path)
            site.start(env={"SITESYNC_INGEST_STAGED": "1"} if way == "staged" else None)
            prepare(site, case)
            text = run_sync(site)
            check("Sync finished" in text, "%s %s: sync failed:\n%s" % (case, way, text))
            wrote_direct = "Write: first sync into an empty catalog" in text
            want_direct = way == "direct" and case != "changing"
            check(wrote_direct == want_direct, "%s %s: direct write %s, expected %s:\n%s"
                  % (case, way, wrote_direct, want_direct, text))
            tops.append((way, site))

        a, b = state(tops[0][1]), state(tops[1][1])
        for k in a:
            check(a[k] == b[k], "%s: %s differ between the direct and the staged first sync:"
                  "\n  direct %s\n  staged %s" % (case, k, a[k], b[k]))
        direct = tops[0][1]
        bad = direct.sql("SELECT count(*) FROM updates "
                         "WHERE entry_hash <> sha256(int4send(revision) || content)")
        check(bad == "0", "%s: %s rows whose entry_hash is not sha256(revision || content)"
              % (case, bad))
        if case == "changing":
            warned = "staged instead" in direct.log_text()
            check(warned, "changing: no warning that the direct write was rolled back")
            held, expired = expected_expired(pkgs, product=None, months=0)
            held = {p for p in held if any(
                q[0] == p and ({cfg["product"], cfg["trigger"]} & q[1]) for q in pkgs)}
            check(ids(direct, "true") == held, "changing: held ids are not the products "
                  "selected before and during the sync")
        else:
            held, expired = expected_expired(pkgs, cfg.get("product"), cfg.get("language"),
                                             cfg["months"])
            check(ids(direct, "true") == held, "%s: %d ids held, %d computed"
                  % (case, len(ids(direct, "true")), len(held)))
            check(ids(direct, "expired") == expired, "%s: %d expired, %d computed"
                  % (case, len(ids(direct, "expired")), len(expired)))
        check(direct.sql("SELECT title LIKE 'DUPLICATE%%' FROM updates WHERE update_id = '%s'"
                         % pkgs[10][0]) in ("f", ""), "%s: a later duplicate replaced the first"
              % case)
        log("%s: %s entries, %s expired; the direct and the staged first sync agree"
            % (case, direct.sql("SELECT count(*) FROM updates"),
               direct.sql("SELECT count(*) FROM updates WHERE expired")))
        for _, site in tops:
            site.stop()


if __name__ == "__main__":
    harness.main(test, "first_sync")
