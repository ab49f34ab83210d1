#!/usr/bin/env python3
"""The dashboard page at GET / as a browser renders it.

CAS -> P01 -> S01 and P02 under CAS, all running and synced; then S01 is
SIGKILLed so the page has a site in another state than "succeeded". Headless
Chromium loads http://CAS/ (the page fetches /status with JavaScript) and
dumps the DOM: every site of `status --json` must have a row with the same
data-site and data-state, and no other row may exist. A screenshot is saved
next to the DOM dump in the test's temp dir (SS_KEEP_TMP=1 keeps it).
GET / without a script already carries the rows (server-side first).
The detail view (#site=S01) shows S01's row in full, with why it is stale.
Screenshots of both views and the DOM are kept as artifacts in
$SS_ARTIFACTS_DIR (default: test-artifacts/dashboard under the test's
working directory, the build directory under meson).
The synchronizations table lists the syncs of CAS that `history --json` gives.
The charts (inline SVG drawn by the page's script from /status) have one
propagation bar and one lag line per site of `status --json`, each with
data-site; the top's bar is 0 s, the synced parents' are not behind and
the dead S01, one version short after round 2, is. A
script error leaves them empty and fails the test.

Skips (exit 77) only when no Chromium binary can be found.
"""

import html.parser
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402
from test_status import build_hierarchy, http_get, rows_of, wait_state  # noqa: E402

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

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "when" in (a.get("class") or "").split():
            self.when_cells += 1
        if "data-detail-site" in a:
            self.detail = a["data-detail-site"]
        if "data-field" in a:
            self._field = a["data-field"]
        elif tag == "td" and self._field:
            self.fields[self._field] = ""
        cls = (a.get("class") or "").split()
        if "prop-bar" in cls:
            self.prop[a.get("data-site")] = (a.get("data-seconds"), a.get("data-behind"))
        elif "lag-series" in cls:
            self.lag[a.get("data-site")] = (a.get("data-lag"), a.get("data-points"))
        elif "data-site" in a:
            self.rows.append((a["data-site"], a.get("data-state")))
        if "data-sync-trigger" in a:
            self.syncs.append((a["data-sync-trigger"], a.get("data-sync-result")))

    def handle_data(self, data):
        if self._field and self._field in self.fields:
            self.fields[self._field] += data

    def handle_endtag(self, tag):
        if tag == "tr":
            self._field = None


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


def states(site):
    _, rows = rows_of(site)
    return {code: r.get("state") for code, r in rows.items()}


def test(h):
    exe = find_chromium()
    if exe is None:
        raise harness.Skip("no Chromium found (apt-get install chromium, or set "
                           "SS_CHROMIUM); the dashboard test needs a browser")
    log("browser: %s" % exe)
    hy = build_hierarchy(h, start_p02=True)
    cas = hy["CAS"]
    url = "http://127.0.0.1:%d/" % cas.http_port
    status, page = http_get(cas.http_port, "/")
    check(status == 200 and "<html" in page.lower(), "GET / answered %d" % status)
    # Server-side first: the rows are in the page as sent, before any script.
    p = RowParser()
    p.feed(page)
    want = states(cas)
    check(dict(p.rows) == want and len(p.rows) == len(want),
          "GET / without a script: rows %r, status %r" % (p.rows, want))
    hist = [(r["trigger"], r["result"]) for r in
            json.loads(cas.cli_ok("history", "--json"))["syncs"]]
    check(hist and p.syncs == hist, "GET / syncs %r, history %r" % (p.syncs, hist))
    check(p.when_cells > 0 and ".when { white-space: nowrap; }" in page,
          "dates are not kept on one line")
    log("GET / carries %d site rows and %d syncs before any script runs"
        % (len(p.rows), len(p.syncs)))

    hy["S01"].kill()
    wait_state(cas, "S01", lambda r, d: r.get("state") == "stale", 60,
               "S01 to read stale at CAS")
    # A new top version reaches P01 and P02 but not the dead S01: the
    # propagation chart shows S01 behind.
    hy.next_round()
    h.wait_converged(cas, [hy["P01"], hy["P02"]], 60, "round 2 at P01 and P02")

    # States can move while the browser loads; only a view taken between two
    # identical `status --json` answers is compared.
    def rendered():
        before = states(cas)
        dom = chromium(h, exe, url, "--dump-dom")
        after = states(cas)
        if before != after:
            raise harness.NotYet("status changed during the page load")
        return before, dom
    want, dom = wait_for(rendered, 120, "a stable dashboard render", interval=1)
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
    log("charts: propagation %r, lag %r" % (p.prop, p.lag))
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
    for name, u in (("dashboard.png", url), ("dashboard-S01.png", url + "#site=S01")):
        shot = h.path(name)
        chromium(h, exe, u, "--window-size=1400,900", "--screenshot=" + shot)
        check(os.path.exists(shot) and os.path.getsize(shot) > 1000,
              "no screenshot at %s" % shot)
        shutil.copy(shot, os.path.join(keep, name))
        log("screenshot %s (%d bytes)" % (os.path.join(keep, name), os.path.getsize(shot)))
    shutil.copy(h.path("dashboard.html"), os.path.join(keep, "dashboard.html"))


if __name__ == "__main__":
    harness.main(test, "dashboard")
