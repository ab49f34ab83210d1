#!/usr/bin/env python3
"""A refused reload at a leaf reaches the top (issue 16, item 19):

    CAS (top) -> P01 -> S01

  - S01's configuration file turns bad ([children] pending_max out of
    range, and a changed cert_warning_days); `sitesync reload` there is
    refused (exit 2) and S01 records 7142. Its status row carries the
    message up: CAS's `history --json` holds one 7142 with site S01,
    severity error and the exact reason text, and so does P01's; CAS's
    `status --json` lists it in S01's row ("messages"). S01 keeps its
    running configuration (cert_warning_days 30, still reporting).
  - A SIGHUP at S01 with the same file: a second 7142 at CAS.
  - Later reports repeat the messages: CAS takes each once (logged once);
    a restart of CAS takes the rows again: CAS's history still holds
    exactly two, none twice.
  - [status] relay_messages = 0 at P01: P01 records none of S01's
    messages (a third refusal); the row itself, signed by S01, still
    carries it to CAS, which records it.
"""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

REASON = "[children] pending_max must be 0 to 1024"


def relayed(site, origin="S01", msg_id=7142):
    # -s: S01's configuration file is one the CLI would refuse too.
    return [m for m in json.loads(site.cli_ok("-s", site.control, "history", "--json",
                                              "--limit", "500"))
            ["messages"] if m["msg_id"] == msg_id and m["site"] == origin]


def row(site, code):
    return [r for r in site.status_json()["sites"] if r["site"] == code][0]


def test(h):
    cas, _ = h.add_top(50, 16)
    p01 = h.add_site("P01", parent=cas)
    s01 = h.add_site("S01", parent=p01, listen=False)
    h.start_tree(cas, p01, s01)
    cas.cli_ok("sync", "--yes", "--wait", "--timeout", "90", timeout=100)
    h.wait_converged(cas, [p01, s01], 90, "version 1 everywhere")
    check(relayed(cas) == [] and relayed(p01) == [], "a 7142 of S01 before any reload")

    s01.extra = {"children": {"pending_max": "5000"}, "status": {"cert_warning_days": "7"}}
    s01.write_config()
    rc, out, err = s01.cli("-s", s01.control, "reload")
    check(rc == 2 and ("reload refused: %s; the running configuration is kept" % REASON) in err,
          "S01 reload: rc %d %r %r" % (rc, out, err))
    text = "Reload of %s refused: %s; the running configuration is kept" % (s01.conf, REASON)
    m = wait_for(lambda: relayed(cas), 30, "S01's 7142 in CAS's history")
    check(len(m) == 1 and m[0]["severity"] == "error" and m[0]["text"] == text,
          "CAS history: %r" % m)
    # The table an operator reads at the top: AT SITE ID SEVERITY TEXT.
    lines = [ln for ln in cas.cli_ok("history").splitlines() if ln.split()[1:4] ==
             ["S01", "7142", "error"]]
    check(len(lines) == 1 and lines[0].startswith(m[0]["at"]) and lines[0].endswith(text),
          "CAS history table: %r" % lines)
    own = relayed(s01)
    check(len(own) == 1 and own[0]["text"] == text, "S01's own history: %r" % own)
    mid = wait_for(lambda: relayed(p01), 30, "S01's 7142 in P01's history")
    check(len(mid) == 1 and mid[0]["text"] == text and mid[0]["at"] == m[0]["at"],
          "P01 history %r, CAS %r" % (mid, m))
    r = row(cas, "S01")
    check([(x["msg_id"], x["site"], x["severity"], x["text"], x["at"]) for x in r["messages"]]
          == [(7142, "S01", "error", text, m[0]["at"])],
          "CAS status --json S01 messages: %r" % r["messages"])
    # The leaf kept its running configuration and still reports.
    st = json.loads(s01.cli_ok("-s", s01.control, "status", "--json"))
    check(st["cert_warning_days"] == 30 and s01.running(), "S01 after the refusal: %r"
          % st["cert_warning_days"])
    log("sitesync reload at S01 refused: 7142 at P01 and CAS, %r" % text)

    os.kill(s01.proc.pid, signal.SIGHUP)
    wait_for(lambda: len(relayed(cas)) == 2, 30, "the SIGHUP refusal at CAS")
    m = relayed(cas)
    check([x["text"] for x in m] == [text, text], "CAS history after SIGHUP: %r" % m)
    check(len(row(cas, "S01")["messages"]) == 2, "S01's row carries its two messages")
    # S01 reports again (a sync on request): CAS raises each message once.
    reported = row(cas, "S01")["reported_at"]
    cas.cli_ok("sync", "--yes", "--wait", "--timeout", "60", timeout=70)
    wait_for(lambda: row(cas, "S01")["reported_at"] != reported, 30, "S01 to report again")
    h.wait_converged(cas, [p01, s01], 60, "the tree after the second sync")
    line = "[7142] from S01: " + text
    seen = cas.log_text().count(line)
    check(seen == 2, "CAS logged S01's 7142 %d times, not 2 (once each)" % seen)
    # Later reports (a new round) and a restart of CAS record nothing twice.
    cas.restart()
    wait_for(lambda: len(row(cas, "S01")["messages"]) == 2, 30, "S01's row at CAS after restart")
    h.wait_converged(cas, [p01, s01], 60, "the tree after CAS's restart")
    check(len(relayed(cas)) == 2 and len(relayed(p01)) == 2,
          "after CAS's restart: CAS %r, P01 %r" % (relayed(cas), relayed(p01)))
    log("SIGHUP refusal at CAS; a restart of CAS records none twice")

    # [status] relay_messages = 0 at P01: nothing taken from S01 any more.
    p01.extra = {"status": {"relay_messages": "0"}}
    p01.write_config()
    p01.cli_ok("reload")
    s01.cli("-s", s01.control, "reload")
    wait_for(lambda: len(relayed(s01)) == 3, 30, "S01's third 7142")
    wait_for(lambda: len(relayed(cas)) == 3, 30, "S01's third 7142 at CAS")
    check(len(row(p01, "S01")["messages"]) == 3 and len(relayed(p01)) == 2,
          "relay_messages = 0 at P01: row %r, history %r" % (row(p01, "S01")["messages"],
                                                             relayed(p01)))
    log("[status] relay_messages = 0 at P01 records none")


if __name__ == "__main__":
    harness.main(test, "reload_relay")
