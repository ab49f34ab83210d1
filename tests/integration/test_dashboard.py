#!/usr/bin/env python3
"""The dashboard page at GET / as a browser renders it.

CAS -> P01 -> S01 and P02 under CAS, all running and synced; then S01 is
SIGKILLed so the page has a site in another state than "succeeded". Headless
Chromium loads http://CAS/ (the page fetches /status with JavaScript) and
dumps the DOM: every site of `status --json` must have a row with the same
data-site and data-state, and no other row may exist. A screenshot is saved
next to the DOM dump in the test's temp dir (SS_KEEP_TMP=1 keeps it).
GET / without a script already carries the rows (server-side first).
The detail view (#site=S01, or ?site=S01 rendered by the server first)
shows S01's row in full, with why it is stale, its last sync (the row's)
and the 7142 of a reload refused there before it died, with the exact
values of `status --json`; GET /?site=CAS carries CAS's syncs as
`history --json` lists them, before any script.
Screenshots of both views and the DOM are kept as artifacts in
$SS_ARTIFACTS_DIR (default: test-artifacts/dashboard under the test's
working directory, the build directory under meson).
The synchronizations table lists the syncs of CAS that `history --json` gives.
The charts (inline SVG drawn by the page's script from /status) have one
propagation bar and one lag line per site of `status --json`, each with
data-site; the lag lines are complete on the first load: every corner
(data-at, data-seconds, data-held) is the one versions_reached gives, the
top's are all 0 and P02's shows the seconds it was behind while down; the top's bar is 0 s, the synced parents' are not behind and
the dead S01, one version short after the last round, is. After twelve
versions the chart of the last versions has one series per version for
the top's last ten, each with one bar per site whose data-seconds is the
time from the top's commit to the site's (versions_reached). A
script error leaves them empty and fails the test.

Skips (exit 77) only when no Chromium binary can be found.
"""

import calendar
import html.parser
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402
from test_status import build_hierarchy, http_get, rows_of, wait_state  # noqa: E402

PROP_VERSIONS = 10              # STATUS_PROP_VERSIONS, the page's PROP_VERSIONS
RELOAD_REASON = "[children] pending_max must be 0 to 1024"

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser",
                       "google-chrome", "google-chrome-stable")


def find_chromium():
    env = os.environ.get("SS_CHROMIUM")
    for c in ((env,) if env else ()) + CHROMIUM_CANDIDATES:
        path = c if os.path.isabs(c) else shutil.which(c)
        if path and os.access(path, os.X_OK):
            return path
    return None


class RowParser(html.parser.HTMLParser):
    """Collect (data-site, data-state) of every element that has data-site."""

    def __init__(self):
        super().__init__()
        self.rows = []
        self.prop = {}
        self.lag = {}
        self.syncs = []
        self.when_cells = 0
        self.detail = None
        self.fields = {}
        self._field = None
        self.series = []        # prop-series data-version, in page order
        self.points = {}        # (version, site) -> (data-seconds, data-behind)
        self.lag_points = {}    # site -> [(data-at, data-seconds, data-held)] in order
        self.lag_now = None     # the lag chart's data-now (its /status generated_at)
        self.tables = {}        # tbody id -> rows of cell texts
        self._tbody = None
        self._row = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "when" in (a.get("class") or "").split():
            self.when_cells += 1
        if "data-detail-site" in a:
            self.detail = a["data-detail-site"]
        if tag == "tbody":
            self._tbody = a.get("id")
            self.tables.setdefault(self._tbody, [])
        elif tag == "tr" and self._tbody:
            self._row = []
            self.tables[self._tbody].append(self._row)
        elif tag == "td" and self._row is not None:
            self._row.append("")
        if "data-field" in a:
            self._field = a["data-field"]
        elif tag == "td" and self._field:
            self.fields[self._field] = ""
        cls = (a.get("class") or "").split()
        if "prop-series" in cls:
            self.series.append(a.get("data-version"))
        elif "prop-point" in cls:
            self.points[(a.get("data-version"), a.get("data-site"))] = (
                a.get("data-seconds"), a.get("data-behind"))
        elif "prop-bar" in cls:
            self.prop[a.get("data-site")] = (a.get("data-seconds"), a.get("data-behind"))
        elif "lag-series" in cls:
            self.lag[a.get("data-site")] = (a.get("data-lag"), a.get("data-points"))
        elif "lag-point" in cls:
            self.lag_points.setdefault(a.get("data-site"), []).append(
                (a.get("data-at"), a.get("data-seconds"), a.get("data-held")))
        elif tag == "svg" and a.get("id") == "lag-chart":
            self.lag_now = a.get("data-now")
        elif "data-site" in a:
            self.rows.append((a["data-site"], a.get("data-state")))
        if "data-sync-trigger" in a and self._tbody != "detail-syncs":
            self.syncs.append((a["data-sync-trigger"], a.get("data-sync-result")))

    def handle_data(self, data):
        if self._field and self._field in self.fields:
            self.fields[self._field] += data
        if self._row:
            self._row[-1] += data

    def handle_endtag(self, tag):
        if tag == "tr":
            self._field = None
            self._row = None
        elif tag == "tbody":
            self._tbody = None


def chromium(h, exe, url, *mode):
    profile = h.path("chromium-profile")
    os.makedirs(profile, exist_ok=True)
    argv = [exe, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            "--user-data-dir=" + profile, "--virtual-time-budget=5000"] \
        + list(mode) + [url]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=120)
    check(p.returncode == 0, "chromium %s exited %d: %s"
          % (" ".join(mode), p.returncode, p.stderr[-2000:]))
    return p.stdout


def sync_cells(y):
    """A sync row's cells as the page writes them."""
    versions = str(y["to_version"]) if y["from_version"] == y["to_version"] else \
        "%d \u2192 %d" % (y["from_version"], y["to_version"])
    err = "%d: %s" % (y["error_code"], y["error"] or "") if y["error_code"] else ""
    return [y["started_at"] or "", y["ended_at"] or "", "%d s" % y["duration_s"], y["kind"],
            y["trigger"] or "", y["source"] or "", y["result"], versions, str(y["added"]),
            str(y["changed"]), str(y["removed"]), str(y["expired"]), err,
            y.get("by_source") or ""]


def epoch(t):
    return calendar.timegm(time.strptime(t, "%Y-%m-%dT%H:%M:%SZ")) if t else None


def expected_propagation(doc):
    """(version, site) -> (seconds or None, behind) for the top's last
    PROP_VERSIONS versions, from versions_reached as the page reads them."""
    sites = doc["sites"]
    top = [r for r in sites if not r["parent"]][0]
    versions = [v for v in top["versions_reached"] if v["reached_at"]][:PROP_VERSIONS]
    out = {}
    for v in versions:
        t0 = epoch(v["reached_at"])
        for r in sites:
            if r["catalog_version"] < v["version"]:
                out[(v["version"], r["site"])] = (None, True)
                continue
            known = r["versions_reached"]
            times = [epoch(e["reached_at"]) for e in known
                     if e["version"] >= v["version"] and e["reached_at"]]
            ok = known and min(e["version"] for e in known) <= v["version"] and times
            out[(v["version"], r["site"])] = (max(0, min(times) - t0) if ok else None, False)
    return [v["version"] for v in reversed(versions)], out


def expected_lag(doc, now):
    """site -> [(at, seconds, held)]: each site's lag line from versions_reached,
    sampled just before and at each commit time (top's or site's) up to now:
    at t a site holding h lags t - (the top's commit of its oldest version
    newer than h), 0 if none. Drawn from the first time the site held the
    top's oldest listed version (older top versions are not listed)."""
    def reached(r):
        return sorted((e["version"], epoch(e["reached_at"])) for e in r["versions_reached"]
                      if e["reached_at"])
    top = reached([r for r in doc["sites"] if not r["parent"]][0])
    out = {}
    for r in doc["sites"]:
        mine = reached(r)

        def held(t, strict):
            got = [v for v, at in mine if (at < t if strict else at <= t)]
            return max(got) if got else None

        def lag(t, h):
            nxt = [at for v, at in top if v > h]
            return max(0, t - nxt[0]) if nxt else 0
        starts = [at for v, at in mine if top and v >= top[0][0] and at <= now]
        if not starts:
            out[r["site"]] = []
            continue
        start = min(starts)
        h = held(start, False)
        pts = [(start, lag(start, h), h)]
        for t in sorted({at for _, at in top + mine if start < at < now} | {now} - {start}):
            before, h = held(t, True), held(t, False)
            if lag(t, before) != lag(t, h):
                pts.append((t, lag(t, before), before))
            pts.append((t, lag(t, h), h))
        out[r["site"]] = [(str(t), str(s), str(v)) for t, s, v in pts]
    return out


def states(site):
    _, rows = rows_of(site)
    return {code: r.get("state") for code, r in rows.items()}


def stable(site, fetch, timeout, what, interval=0.5):
    """(states, fetch()) for a fetch made between two identical `status
    --json` answers: rows can move while a page is made, and only such a
    view is compared."""
    def once():
        before = states(site)
        got = fetch()
        if states(site) != before:
            raise harness.NotYet("status changed during %s" % what)
        return before, got
    return wait_for(once, timeout, "a stable " + what, interval=interval)


def test(h):
    exe = find_chromium()
    if exe is None:
        raise harness.Skip("no Chromium found (apt-get install chromium, or set "
                           "SS_CHROMIUM); the dashboard test needs a browser")
    log("browser: %s" % exe)
    hy = build_hierarchy(h, start_p02=True)
    cas = hy["CAS"]
    url = "http://127.0.0.1:%d/" % cas.http_port
    # A child's row can still move (S01 reporting its first sync).
    want, (status, page) = stable(cas, lambda: http_get(cas.http_port, "/"), 60, "GET /")
    check(status == 200 and "<html" in page.lower(), "GET / answered %d" % status)
    # Server-side first: the rows are in the page as sent, before any script.
    p = RowParser()
    p.feed(page)
    check(dict(p.rows) == want and len(p.rows) == len(want),
          "GET / without a script: rows %r, status %r" % (p.rows, want))
    hist = [(r["trigger"], r["result"]) for r in
            json.loads(cas.cli_ok("history", "--json"))["syncs"]]
    check(hist and p.syncs == hist, "GET / syncs %r, history %r" % (p.syncs, hist))
    check(p.when_cells > 0 and ".when { white-space: nowrap; }" in page,
          "dates are not kept on one line")
    log("GET / carries %d site rows and %d syncs before any script runs"
        % (len(p.rows), len(p.syncs)))

    # More versions than the chart keeps: ten more rounds, all sites alive.
    # P02 is down for one of them and gets that version late.
    for i in range(PROP_VERSIONS):
        if i == 4:
            # P02 holds the previous version when it goes down, so the
            # version it gets late is exactly one step ahead of it.
            h.wait_converged(cas, [hy["P02"]], 60, "P02 before it goes down")
            hy["P02"].stop()
        late = hy.next_round()
        if i == 4:
            time.sleep(2)
            hy["P02"].start()
            h.wait_converged(cas, [hy["P02"]], 60, "P02 back with version %d" % late)
            late_version = late
    h.wait_converged(cas, [hy["P01"], hy["P02"], hy["S01"]], 120, "round 11 everywhere")
    # A refused reload at S01 reaches CAS's view of S01 (its error messages).
    s01 = hy["S01"]
    s01.extra = {"children": {"pending_max": "5000"}}
    s01.write_config()
    rc, _, err = s01.cli("-s", s01.control, "reload")
    check(rc == 2 and RELOAD_REASON in err, "S01 reload: rc %d %r" % (rc, err))
    reload_text = "Reload of %s refused: %s; the running configuration is kept" % (
        s01.conf, RELOAD_REASON)
    wait_state(cas, "S01", lambda r, d: [m["msg_id"] for m in r["messages"]] == [7142], 30,
               "S01's 7142 in its row at CAS")

    hy["S01"].kill()
    wait_state(cas, "S01", lambda r, d: r.get("state") == "stale", 60,
               "S01 to read stale at CAS")
    # A new top version reaches P01 and P02 but not the dead S01: the
    # propagation chart shows S01 behind.
    hy.next_round()
    h.wait_converged(cas, [hy["P01"], hy["P02"]], 60, "round 2 at P01 and P02")
    # Lag is in whole seconds: let one pass since the top's commit, or the
    # page can be made in the same second and show the dead S01 at lag 0.
    time.sleep(1.1)

    # States can move while the browser loads.
    want, dom = stable(cas, lambda: chromium(h, exe, url, "--dump-dom"), 120,
                       "dashboard render", interval=1)
    with open(h.path("dashboard.html"), "w") as f:
        f.write(dom)
    p = RowParser()
    p.feed(dom)
    got = dict(p.rows)
    check(len(got) == len(p.rows), "a site has two rows: %r" % p.rows)
    check({"CAS", "P01", "P02", "S01"} <= set(want), "status lists %s" % sorted(want))
    check(got == want, "dashboard rows %r, status --json %r" % (got, want))
    check(want["S01"] == "stale" and want["CAS"] == "succeeded",
          "unexpected states %r" % want)
    log("dashboard rows match status --json: %s" % sorted(got.items()))
    # The charts: one propagation bar and one lag series per site, drawn
    # in the browser from the same /status (none of it without a script).
    check(p.prop.keys() == want.keys(), "propagation bars %r, sites %r" % (p.prop, want))
    check(p.lag.keys() == want.keys(), "lag series %r, sites %r" % (p.lag, want))
    check(p.prop["CAS"] == ("0", "false"), "top's own bar %r" % (p.prop["CAS"],))
    check(p.prop["S01"][1] == "true" and p.prop["S01"][0].isdigit(),
          "S01 (dead, one version behind) bar %r" % (p.prop["S01"],))
    for code in ("P01", "P02"):
        sec, behind = p.prop[code]
        check(behind == "false" and sec.isdigit(), "%s propagation %r" % (code, p.prop[code]))
    check(all(int(n) >= 1 for _, n in p.lag.values()), "lag series %r" % p.lag)
    # The last versions' chart: one series per version, the top's last
    # PROP_VERSIONS (oldest first), one bar per site with exact seconds;
    # S01 lacks the newest and shows it behind.
    doc = cas.status_json()
    top = cas.catalog_state()[0]
    versions, want_points = expected_propagation(doc)
    check(versions == list(range(top - PROP_VERSIONS + 1, top + 1)),
          "the top's last versions %r, top version %d" % (versions, top))
    check(p.series == [str(v) for v in versions], "series %r, versions %r"
          % (p.series, versions))
    check(set(p.points) == {(str(v), c) for v, c in want_points},
          "points %r, want %r" % (sorted(p.points), sorted(want_points)))
    for (v, code), (sec, behind) in want_points.items():
        got = p.points[(str(v), code)]
        if behind:
            check(got[1] == "true" and got[0].isdigit(), "v%d %s: %r (behind)" % (v, code, got))
        else:
            check(got == ("" if sec is None else str(sec), "false"),
                  "v%d %s: %r, want %r" % (v, code, got, sec))
    check(p.points[(str(top), "S01")][1] == "true" and
          p.points[(str(top - 1), "S01")] == (str(want_points[(top - 1, "S01")][0]), "false"),
          "S01 in the chart: %r" % [(k, x) for k, x in p.points.items() if k[1] == "S01"])
    late_s = p.points[(str(late_version), "P02")][0]
    check(late_s.isdigit() and int(late_s) >= 2, "P02, down while version %d came, got it "
          "after %r s" % (late_version, late_s))
    check(all(p.points[(str(v), "CAS")] == ("0", "false") for v in versions),
          "the top's own bars: %r" % [(k, x) for k, x in p.points.items() if k[1] == "CAS"])
    # The lag chart, complete on this first load: each site's lag line from
    # versions_reached up to the page's generated_at, corner by corner; the
    # top never lags, P02 lagged from the top's commit of late_version until
    # its own, and the dead S01 lags the newest version until now.
    check(p.lag_now and p.lag_now.isdigit(), "lag chart data-now %r" % p.lag_now)
    now = int(p.lag_now)
    want_lag = expected_lag(doc, now)
    for code in want:
        check(p.lag_points.get(code) == want_lag[code], "lag line of %s %r, from "
              "versions_reached %r" % (code, p.lag_points.get(code), want_lag[code]))
    # (several versions can share a second: one corner per distinct second,
    # and the top's last commit can fall in the page's own second)
    check(len(want_lag["CAS"]) >= 2 and want_lag["CAS"][-1][2] == str(top) and
          all(s == "0" for _, s, _ in want_lag["CAS"]), "the top's lag %r" % want_lag["CAS"])
    rows = {r["site"]: r for r in doc["sites"]}
    top_at = {e["version"]: epoch(e["reached_at"]) for e in rows["CAS"]["versions_reached"]}
    p02_at = min(epoch(e["reached_at"]) for e in rows["P02"]["versions_reached"]
                 if e["version"] >= late_version)
    late_lag = p02_at - top_at[late_version]
    check(late_lag >= 2 and late_lag == int(late_s) and
          (str(p02_at), str(late_lag), str(late_version - 1)) in want_lag["P02"],
          "P02's lag step for version %d: %d s at %d, line %r" % (
              late_version, late_lag, p02_at, want_lag["P02"]))
    check(want_lag["S01"][-1] == (str(now), str(now - top_at[top]), str(top - 1)) and
          now - top_at[top] > 0, "S01's lag now %r" % (want_lag["S01"][-1],))
    log("charts: propagation %r, lag %r; P02 %d s behind with version %d"
        % (p.prop, p.lag, late_lag, late_version))
    # The synchronizations table: CAS's syncs as `history --json` lists them.
    hist = [(r["trigger"], r["result"]) for r in
            json.loads(cas.cli_ok("history", "--json"))["syncs"]]
    check(hist and p.syncs == hist, "dashboard syncs %r, history %r" % (p.syncs, hist))
    log("synchronizations table: %r" % p.syncs)

    # The site detail view: #site=S01 shows S01's row in full.
    dom = chromium(h, exe, url + "#site=S01", "--dump-dom")
    d = RowParser()
    d.feed(dom)
    s01 = [r for r in cas.status_json()["sites"] if r["site"] == "S01"][0]
    check(d.tables.get("detail-syncs") == [sync_cells(y) for y in s01["syncs"]] and
          len(s01["syncs"]) == 1 and s01["syncs"][0]["trigger"] == "parent" and
          s01["syncs"][0]["to_version"] == top - 1, "detail syncs of S01 %r, status %r"
          % (d.tables.get("detail-syncs"), s01["syncs"]))
    msgs = [[m["at"], "7142", "error", reload_text] for m in s01["messages"]]
    check(d.tables.get("detail-msgs") == msgs and len(msgs) == 1,
          "detail messages of S01 %r, want %r" % (d.tables.get("detail-msgs"), msgs))
    hist = [m for m in json.loads(cas.cli_ok("history", "--json"))["messages"]
            if m["site"] == "S01" and m["msg_id"] == 7142]
    check(len(hist) == 1 and [hist[0]["at"], "7142", "error", hist[0]["text"]] == msgs[0],
          "CAS history of S01's 7142 %r, detail %r" % (hist, msgs))
    # Server-side first: GET /?site=CAS carries CAS's syncs (its history's)
    # and fields, before any script; GET /?site=S01 the same as the browser.
    _, page = http_get(cas.http_port, "/?site=CAS")
    c = RowParser()
    c.feed(page)
    hist = json.loads(cas.cli_ok("history", "--json"))["syncs"]
    check(c.detail == "CAS" and c.tables.get("detail-syncs") == [sync_cells(y) for y in hist]
          and len(hist) == 1 + PROP_VERSIONS + 1 and c.fields.get("parent") == "-",
          "GET /?site=CAS detail %r %r, history %r" % (c.detail, c.tables.get("detail-syncs"),
                                                      hist))
    _, page = http_get(cas.http_port, "/?site=S01")
    c = RowParser()
    c.feed(page)
    check(c.detail == "S01" and c.tables.get("detail-msgs") == msgs and
          c.tables.get("detail-syncs") == d.tables.get("detail-syncs"),
          "GET /?site=S01: %r %r" % (c.detail, c.tables))
    _, page = http_get(cas.http_port, "/?site=%3Cb%3E")
    check('<section id="detail" hidden>' in page, "GET /?site=<b> shows a detail view")
    check(d.detail == "S01" and d.fields.get("state") == "stale" and
          d.fields.get("stale_reason") == s01["stale_reason"] and
          d.fields.get("catalog_version") == str(s01["catalog_version"]) and
          d.fields.get("link") == s01["link"],
          "detail view of S01: %r %r, status %r" % (d.detail, d.fields, s01))
    log("detail view of S01: %s" % d.fields.get("stale_reason"))

    # Screenshots, kept as test artifacts (SS_ARTIFACTS_DIR, else the
    # build directory's test-artifacts/dashboard).
    keep = os.environ.get("SS_ARTIFACTS_DIR") or os.path.join(os.getcwd(), "test-artifacts",
                                                              "dashboard")
    os.makedirs(keep, exist_ok=True)
    for name, u in (("dashboard.png", url), ("dashboard-S01.png", url + "?site=S01"),
                    ("dashboard-CAS.png", url + "?site=CAS")):
        shot = h.path(name)
        chromium(h, exe, u, "--window-size=1400,2600", "--screenshot=" + shot)
        check(os.path.exists(shot) and os.path.getsize(shot) > 1000,
              "no screenshot at %s" % shot)
        shutil.copy(shot, os.path.join(keep, name))
        log("screenshot %s (%d bytes)" % (os.path.join(keep, name), os.path.getsize(shot)))
    shutil.copy(h.path("dashboard.html"), os.path.join(keep, "dashboard.html"))


if __name__ == "__main__":
    harness.main(test, "dashboard")
