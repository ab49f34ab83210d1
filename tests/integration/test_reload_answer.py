#!/usr/bin/env python3
"""Reload results visible (issue 16, item 19):

  - `sitesync reload` re-reads the configuration and answers: exit 0 and
    "Configuration reloaded from FILE." (status message 7143), or exit 2
    and "reload refused: REASON; the running configuration is kept" with
    status message 7142 in `history`, the running values kept.
  - A refused SIGHUP reload also leaves 7142 in `history`.
  - The systemd unit's ExecReload runs `sitesync reload`, so `systemctl
    reload` waits for that answer.
"""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402


def messages(site, msg_id):
    # -s: the configuration file may be one the daemon (and the CLI) refuse.
    return [m for m in json.loads(site.cli_ok("-s", site.control, "history", "--json"))
            ["messages"] if m["msg_id"] == msg_id]


def test(h):
    unit = open(os.path.join(h.src, "deploy", "sitesyncd.service")).read()
    check("\nExecReload=@BINDIR@/sitesync -c /etc/sitesync/sitesync.conf reload\n" in unit,
          "the unit's ExecReload does not wait for the answer")

    cas = h.add_site("CAS", extra={"upstream": {"max_removal_percent": "40"}})
    cas.start()
    out = cas.cli_ok("reload")
    check(out.strip() == "Configuration reloaded from %s." % cas.conf, "reload said %r" % out)
    m = wait_for(lambda: messages(cas, 7143), 20, "7143 in history")
    check(m and m[0]["text"] == "Configuration reloaded from %s" % cas.conf, "7143 %r" % m)

    cas.extra["upstream"]["max_removal_percent"] = "200"
    cas.write_config()
    rc, out, err = cas.cli("reload")
    want = ("reload refused: [upstream] max_removal_percent must be 0 to 100; the running "
            "configuration is kept")
    check(rc == 2 and want in err, "refused reload: rc %d %r %r" % (rc, out, err))
    m = wait_for(lambda: messages(cas, 7142), 20, "7142 in history")
    check(len(m) == 1 and m[0]["severity"] == "error" and m[0]["text"] ==
          "Reload of %s refused: [upstream] max_removal_percent must be 0 to 100; the running "
          "configuration is kept" % cas.conf, "7142 in history: %r" % m)
    check(cas.running(), "CAS exited on a refused reload")
    log("sitesync reload: refused with the reason, 7142 in history")

    os.kill(cas.proc.pid, signal.SIGHUP)
    wait_for(lambda: len(messages(cas, 7142)) == 2, 30, "the SIGHUP refusal in history")
    cas.extra["upstream"]["max_removal_percent"] = "30"
    cas.write_config()
    cas.cli_ok("reload")
    wait_for(lambda: len(messages(cas, 7143)) == 2, 20, "7143 for the good reload after them")
    log("SIGHUP refusal in history; a good reload after it")


if __name__ == "__main__":
    harness.main(test, "reload_answer")
