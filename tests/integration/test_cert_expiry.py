#!/usr/bin/env python3
"""Certificate expiry: a site whose certificate is close to expiry is
flagged in its status row and rolled up at every site above it.

    CAS (HTTP, alert command) -> P01 -> S01

S01's certificate is made valid for 10 days, the others for a year.
[status] cert_warning_days is the default 30 at CAS and 5 at P01: the
window belongs to the site that looks, like the stale rule.

1. CAS's `status --json`: S01's row has cert_expiring true and
   cert_days_left equal to the days left that openssl reads from S01's
   certificate; CAS and P01 are not flagged; certs_expiring lists S01
   only. The table of `sitesync status` has the roll-up under it, and
   /metrics has sitesync_cert_expiring 1 for S01, 0 for the others.
2. P01 (window 5 days) flags nobody; S01 itself logged the warning.
3. CAS's alert command ran once for S01 with SITESYNC_EVENT=cert_expiring
   and SITESYNC_CERT_EXPIRES; CAS's history has message 7113.
4. S01's certificate is renewed for a year (same key) and S01 reloads
   (SIGHUP): the flag clears at CAS, certs_expiring is empty, the alert
   runs with SITESYNC_EVENT=cert_renewed, and 7114 is in CAS's history.
"""

import calendar
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import NotYet, PortLock, check, log, wait_for  # noqa: E402

TIMEOUT = 120
MSG_CERT_EXPIRING = 7113
MSG_CERT_RENEWED = 7114

SCRIPT = r'''import json, os, sys
env = {k: v for k, v in os.environ.items() if k.startswith("SITESYNC_")}
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(env, sort_keys=True) + "\n")
'''


def not_after(cert):
    """Expiry of a certificate as openssl reads it (Unix time)."""
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-in", cert],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    when = out.strip().split("=", 1)[1]          # e.g. "Dec  5 06:00:00 2026 GMT"
    return calendar.timegm(time.strptime(when, "%b %d %H:%M:%S %Y %Z"))


def rows(site):
    doc = site.status_json()
    return doc, {r["site"]: r for r in doc.get("sites", [])}


def alert_lines(path):
    try:
        with open(path) as f:
            return [json.loads(x) for x in f.read().splitlines() if x.strip()]
    except FileNotFoundError:
        return []


def history_ids(site):
    doc = json.loads(site.cli_ok("history", "--json", "--limit", "200"))
    return [(int(m["msg_id"]), m["text"]) for m in doc["messages"]]


def test(h):
    if True:
        catalog = h.gen_catalog(h.path("upstream", "catalog.xml"), 50, 1, 5)
        h.certs.site("S01", days=10)
        alerts = h.path("alerts.jsonl")
        script = h.path("alert.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        lock = PortLock()
        cas = h.add_site("CAS", upstream="file://" + catalog, extra={
            "http": {"listen": "127.0.0.1:%d" % lock.port},
            "alerts": {"command": "%s %s %s" % (sys.executable, script, alerts)}})
        p01 = h.add_site("P01", parent=cas, extra={"status": {"cert_warning_days": "5"}})
        s01 = h.add_site("S01", parent=p01, listen=False)
        lock.release()
        h.start_tree(cas, p01, s01)
        cas.cli_ok("sync", "--yes")
        h.wait_converged(cas, [p01, s01], TIMEOUT, "first version everywhere")

        expires = not_after(h.certs.cert("S01"))
        days_left = (expires - int(time.time())) // 86400

        # 1. The roll-up at the top.
        def flagged_at_cas():
            doc, r = rows(cas)
            if "S01" not in r or r["S01"].get("cert_expires") is None:
                raise NotYet("no S01 row with cert_expires yet: %r" % r.get("S01"))
            return doc, r
        doc, r = wait_for(flagged_at_cas, TIMEOUT, "S01's row at CAS")
        check(doc.get("cert_warning_days") == 30, "window at CAS: %r" % doc)
        check(r["S01"]["cert_expiring"] is True, "S01 not flagged: %r" % r["S01"])
        check(r["S01"]["cert_days_left"] in (days_left, days_left - 1),
              "S01 days left %r, openssl says %d" % (r["S01"]["cert_days_left"], days_left))
        exp_iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))
        check(r["S01"]["cert_expires"] == exp_iso,
              "S01 cert_expires %r, openssl says %s" % (r["S01"]["cert_expires"], exp_iso))
        for code in ("CAS", "P01"):
            check(r[code]["cert_expiring"] is False, "%s flagged: %r" % (code, r[code]))
            check(r[code]["cert_days_left"] >= 360, "%s days left %r" % (code, r[code]))
        check([e["site"] for e in doc["certs_expiring"]] == ["S01"],
              "certs_expiring at CAS: %r" % doc["certs_expiring"])
        check(doc["certs_expiring"][0]["cert_expires"] == exp_iso,
              "roll-up expiry: %r" % doc["certs_expiring"])
        table = cas.cli_ok("status")
        check("Certificates to renew (expiring within 30 days):" in table and
              "S01  expires %s" % exp_iso in table,
              "no roll-up under the status table:\n%s" % table)
        metrics = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % lock.port,
                                         timeout=10).read().decode()
        for code, want in (("S01", 1), ("P01", 0), ("CAS", 0)):
            line = 'sitesync_cert_expiring{site="%s"} %d' % (code, want)
            check(line in metrics.splitlines(), "metrics lack %r" % line)
        log("CAS flags S01 (%d days left), certs_expiring %r"
            % (r["S01"]["cert_days_left"], doc["certs_expiring"]))

        # 2. The window is the viewer's: P01's 5 days flag nobody.
        doc_p, r_p = rows(p01)
        check(doc_p.get("cert_warning_days") == 5, "window at P01: %r" % doc_p)
        check("S01" in r_p and r_p["S01"]["cert_expiring"] is False,
              "S01 flagged at P01 with a 5-day window: %r" % r_p.get("S01"))
        check(doc_p["certs_expiring"] == [], "certs_expiring at P01: %r" % doc_p)
        check("expires in" in s01.log_text() and "warning window" in s01.log_text(),
              "S01 did not log its own certificate warning")

        # 3. The alert and the history at CAS.
        def cert_alert(event):
            def got():
                hits = [a for a in alert_lines(alerts) if a.get("SITESYNC_EVENT") == event]
                if not hits:
                    raise NotYet("alert lines: %r" % alert_lines(alerts))
                return hits
            return wait_for(got, TIMEOUT, "%s alert" % event)
        hits = cert_alert("cert_expiring")
        check(len(hits) == 1 and hits[0]["SITESYNC_SITE"] == "S01" and
              hits[0]["SITESYNC_CERT_EXPIRES"] == exp_iso and
              hits[0]["SITESYNC_REPORTING_SITE"] == "CAS",
              "cert_expiring alerts: %r" % hits)
        others = [a for a in alert_lines(alerts)
                  if a.get("SITESYNC_EVENT") == "cert_expiring" and a["SITESYNC_SITE"] != "S01"]
        check(not others, "alerts for healthy certificates: %r" % others)
        hist = history_ids(cas)
        check(any(i == MSG_CERT_EXPIRING and "S01" in t for i, t in hist),
              "no 7113 for S01 in CAS's history: %r" % hist[:10])

        # 4. Renewal clears it everywhere above.
        h.certs.renew("S01", 365)
        os.kill(s01.proc.pid, signal.SIGHUP)
        renewed = not_after(h.certs.cert("S01"))
        check(renewed > expires, "renewal did not extend S01's certificate")

        def cleared():
            doc, r = rows(cas)
            if r["S01"]["cert_expiring"] or doc["certs_expiring"]:
                raise NotYet("S01 still flagged: %r" % doc["certs_expiring"])
            return doc, r
        doc, r = wait_for(cleared, TIMEOUT, "S01's renewal seen at CAS")
        check(r["S01"]["cert_days_left"] >= 360, "S01 after renewal: %r" % r["S01"])
        hits = cert_alert("cert_renewed")
        check(len(hits) == 1 and hits[0]["SITESYNC_SITE"] == "S01",
              "cert_renewed alerts: %r" % hits)
        hist = history_ids(cas)
        check(any(i == MSG_CERT_RENEWED and "S01" in t for i, t in hist),
              "no 7114 for S01 in CAS's history: %r" % hist[:10])
        check("Certificates to renew" not in cas.cli_ok("status"),
              "roll-up still printed after renewal")
        log("renewed: S01 expires %s, nothing flagged at CAS" % r["S01"]["cert_expires"])


if __name__ == "__main__":
    harness.main(test, "cert_expiry")
