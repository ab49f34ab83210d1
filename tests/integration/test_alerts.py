#!/usr/bin/env python3
"""Alerts: `[alerts] command` runs at CAS when a site fails, goes stale,
or recovers, with the SITESYNC_* environment describing the change.

CAS -> P01 -> S01, and P02 approved under CAS but never started. The
command is a small script appending its SITESYNC_* environment as one JSON
line to a file. Expected, in order of the test:

  - P02 (approved, never connected) is already stale when CAS starts
    watching: one line, previous state "unknown"; nothing for the healthy
    sites while round 1 spreads;
  - S01's database goes away and a new version cannot be applied there:
    S01 "failed" with the error, its code, S01's and the top's versions;
  - the database comes back: S01 "succeeded", previous "failed";
  - S01 is SIGKILLed: S01 "stale"; restarted: S01 recovers from "stale"
    (to "idle": it already holds the top version); CAS's history has
    7105 (stale) and 7106 (recovered) for S01;
  - six never-connecting children added at once, each command taking 4 s:
    four run, the rest are dropped and logged.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import NotYet, check, log, wait_for  # noqa: E402
from test_status import (TIMEOUT, break_database, build_hierarchy,  # noqa: E402
                         restore_database)

ALERT_TIMEOUT = 60
MSG_SITE_STALE = 7105
MSG_SITE_RECOVERED = 7106

SCRIPT = r'''import json, os, sys, time
if os.environ.get("SITESYNC_SITE", "").startswith("X"):
    time.sleep(4)       # the flood at the end: hold a slot
env = {k: v for k, v in os.environ.items() if k.startswith("SITESYNC_")}
env["stdin_is_devnull"] = os.path.samestat(os.fstat(0), os.stat("/dev/null"))
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(env, sort_keys=True) + "\n")
'''

KEYS = ("SITESYNC_SITE", "SITESYNC_STATE", "SITESYNC_PREVIOUS_STATE",
        "SITESYNC_ERROR", "SITESYNC_ERROR_CODE", "SITESYNC_CATALOG_VERSION",
        "SITESYNC_TOP_VERSION", "SITESYNC_REPORTING_SITE")


class AlertFile:
    def __init__(self, path):
        self.path = path
        self.consumed = 0

    def lines(self):
        try:
            with open(self.path) as f:
                return [json.loads(x) for x in f.read().splitlines() if x.strip()]
        except FileNotFoundError:
            return []

    def wait(self, site, state, what):
        """Next unread line for site in state (a string or a tuple of them);
        the unread lines before it are returned too."""
        states = (state,) if isinstance(state, str) else state
        def arrived():
            new = self.lines()[self.consumed:]
            for i, a in enumerate(new):
                if a.get("SITESYNC_SITE") == site and a.get("SITESYNC_STATE") in states:
                    self.consumed += i + 1
                    return a, new[:i]
            raise NotYet("alert lines so far: %s" % new)
        got, before = wait_for(arrived, ALERT_TIMEOUT, what)
        for a in before + [got]:
            missing = [k for k in KEYS if k not in a]
            check(not missing, "alert line lacks %s: %r" % (missing, a))
            check(a["SITESYNC_REPORTING_SITE"] == "CAS", "reporting site %r" % a)
            check(a.get("stdin_is_devnull") is True, "stdin not /dev/null: %r" % a)
        log("alert: %s %s -> %s (error %s %r, version %s of %s)"
            % (site, got["SITESYNC_PREVIOUS_STATE"], got["SITESYNC_STATE"],
               got["SITESYNC_ERROR_CODE"], got["SITESYNC_ERROR"][:60],
               got["SITESYNC_CATALOG_VERSION"], got["SITESYNC_TOP_VERSION"]))
        return got, before


def test(h):
    script = h.path("alert.py")
    out = h.path("alerts.jsonl")
    with open(script, "w") as f:
        f.write(SCRIPT)
    cmd = "%s %s %s" % (sys.executable, script, out)
    hy = build_hierarchy(h, cas_extra={"alerts": {"command": cmd}})
    cas, s01 = hy["CAS"], hy["S01"]
    alerts = AlertFile(out)

    # P02 was approved but never came: stale from the first look.
    a, before = alerts.wait("P02", "stale", "an alert for the never-connected P02")
    check(a["SITESYNC_PREVIOUS_STATE"] == "unknown", "P02 first alert %r" % a)
    check(not before, "alerts before P02's: %r" % before)
    wait_for(lambda: "alert: command for P02" in cas.log_text(), 30,
             "CAS to log the exit status of P02's alert command")
    check("exited with status 0" in cas.log_text(), "exit status not logged")

    # Round 1 reached every running site without trouble: no alert for them.
    others = [x for x in alerts.lines() if x["SITESYNC_SITE"] != "P02"]
    check(not others, "alerts for healthy sites: %r" % others)

    # A failure at the leaf.
    break_database(h, s01)
    v = hy.next_round()
    a, before = alerts.wait("S01", "failed", "S01's failure alert")
    check(not before, "unexpected alerts before S01's failure: %r" % before)
    check(a["SITESYNC_PREVIOUS_STATE"] == "succeeded", "previous state %r" % a)
    check(a["SITESYNC_ERROR"] != "", "failure alert without error text: %r" % a)
    check(int(a["SITESYNC_ERROR_CODE"]) != 0, "failure alert with code 0: %r" % a)
    check(int(a["SITESYNC_CATALOG_VERSION"]) == 1, "S01 version in alert %r" % a)
    check(int(a["SITESYNC_TOP_VERSION"]) == v, "top version in alert %r, CAS at %d"
          % (a, v))

    restore_database(h, s01)
    a, before = alerts.wait("S01", "succeeded", "S01's recovery alert")
    check(not before, "unexpected alerts before S01's recovery: %r" % before)
    check(a["SITESYNC_PREVIOUS_STATE"] == "failed", "recovery from %r" % a)
    check(int(a["SITESYNC_CATALOG_VERSION"]) == v, "recovered S01 at %r" % a)
    check(a["SITESYNC_ERROR"] == "" and a["SITESYNC_ERROR_CODE"] == "0",
          "recovered S01 still carries an error: %r" % a)

    # A silent leaf.
    s01.kill()
    a, before = alerts.wait("S01", "stale", "S01's stale alert")
    check(not before, "unexpected alerts before S01's stale alert: %r" % before)
    check(a["SITESYNC_PREVIOUS_STATE"] == "succeeded", "stale after %r" % a)
    s01.start()
    # A restarted daemon that holds the top version has nothing to sync.
    a, before = alerts.wait("S01", ("idle", "succeeded"), "S01's recovery from stale")
    check(a["SITESYNC_PREVIOUS_STATE"] == "stale", "recovery from %r" % a)

    # CAS's history records what it observed: S01 stale (7105), recovered (7106).
    def history_has_both():
        hist = json.loads(cas.cli_ok("history", "--json", "--limit", "200"))
        got = {int(m["msg_id"]) for m in hist.get("messages", [])
               if "S01" in (m.get("text") or "")}
        if not {MSG_SITE_STALE, MSG_SITE_RECOVERED} <= got:
            raise NotYet("S01 messages in CAS's history: %s" % sorted(got))
        return True
    wait_for(history_has_both, 30, "messages 7105 and 7106 for S01 at CAS")

    # Every run was logged with its exit status, none failed.
    text = cas.log_text()
    ran = text.count("running command (pid")
    check(ran == len(alerts.lines()), "CAS logged %d runs, the script wrote %d lines"
          % (ran, len(alerts.lines())))
    wait_for(lambda: cas.log_text().count("exited with status 0") == ran, 30,
             "CAS to log the exit of all %d alert commands" % ran)
    log("%d alerts, each logged with exit status 0" % ran)

    # A flood: six approved children that never connect turn stale at once;
    # with every command holding its slot for 4 s, only four may run.
    flood = ["X%02d" % i for i in range(1, 7)]
    for code in flood:
        cas.cli_ok("child", "add", code)

    def flood_settled():
        text = cas.log_text()
        drops = text.count("dropped the alert for X")
        if drops + text.count("running command (pid") - ran < len(flood):
            raise NotYet("%d runs, %d drops" % (text.count("running command (pid")
                                                - ran, drops))
        return [drops]          # a list: zero drops is an answer too
    drops = wait_for(flood_settled, ALERT_TIMEOUT, "all six flood alerts run or dropped")[0]
    wait_for(lambda: cas.log_text().count("exited with status 0") == ran + 6 - drops,
             30, "the flood's alert commands to finish")
    xs = [a for a in alerts.lines() if a["SITESYNC_SITE"].startswith("X")]
    log("flood: %d alerts ran, %d dropped" % (len(xs), drops))
    check(len(xs) == 6 - drops, "%d flood lines written, %d dropped" % (len(xs), drops))
    check(drops >= 2 and len(xs) <= 4, "%d alert commands ran at once (limit 4)"
          % len(xs))


if __name__ == "__main__":
    harness.main(test, "alerts")
