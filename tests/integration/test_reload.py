#!/usr/bin/env python3
"""SIGHUP applies the reloadable keys and keeps the others (issue 13).

CAS starts with a yearly [schedule] cron and no approved children, so P01
is refused. A reload with a daily cron and [children] approved = P01 must
move the next scheduled sync to the new time and let P01 in; the same
reload changes [replication] workers and [site] code, which need a
restart: logged as ignored, the running values kept (a new site code
would not match CAS's certificate and fail the reload). A reload with a
cron that does not parse keeps the running configuration and schedule.
A last reload without a cron clears the schedule.
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402


def reload(site, expect="configuration reloaded"):
    site.write_config()
    mark = site.log_mark()
    os.kill(site.proc.pid, signal.SIGHUP)
    wait_for(lambda: expect in site.log_since(mark), 30, "the reload to log '%s'" % expect)
    return mark


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    h.gen_catalog(catalog, 50, 1, 5)
    cas = h.add_site("CAS", upstream="file://" + catalog,
                     extra={"schedule": {"cron": "0 0 1 1 *", "utc": "true"}})
    p01 = h.add_site("P01", parent=cas, listen=False)
    cas.start()
    p01.start()
    wait_for(lambda: (cas.status_json().get("next_upstream_sync") or "").endswith("-01-01T00:00:00Z"),
             30, "the yearly schedule to be armed")
    wait_for(lambda: "refusing site P01" in cas.log_text(), 30, "P01 to be refused")
    check(all(r["site"] != "P01" for r in cas.status_json()["sites"]),
          "P01 is listed before it is approved")

    cas.extra["schedule"]["cron"] = "30 4 * * *"
    cas.extra["children"] = {"approved": "P01"}
    cas.extra["replication"] = {"workers": "3"}
    cas.extra["site"] = {"code": "ZZZ"}
    mark = reload(cas)
    wait_for(lambda: (cas.status_json().get("next_upstream_sync") or "").endswith("T04:30:00Z"),
             30, "the daily schedule to replace the yearly one")
    wait_for(lambda: any(r["site"] == "P01" and r["link"] == "active"
                         for r in cas.status_json()["sites"]),
             60, "P01 to be approved by the reload and connect")
    text = cas.log_since(mark)
    check("[site] code, [replication] workers: changes need a restart" in text,
          "changed site code and workers were not reported as needing a restart:\n" + text)
    check(cas.status_json()["site"] == "CAS", "the site code changed on reload")
    check(cas.running(), "CAS exited on reload")

    cas.extra["schedule"]["cron"] = "61 * * * *"
    text = cas.log_since(reload(cas, "keeping the running configuration"))
    check("configuration reloaded" not in text, "a bad cron was reloaded:\n" + text)
    check((cas.status_json().get("next_upstream_sync") or "").endswith("T04:30:00Z"),
          "a refused reload changed the schedule")

    del cas.extra["schedule"]
    reload(cas)
    wait_for(lambda: cas.status_json().get("next_upstream_sync") is None, 30,
             "the schedule to be cleared")
    log("cron and approved children took effect on SIGHUP; workers kept")


if __name__ == "__main__":
    harness.main(test, "reload")
