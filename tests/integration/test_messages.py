#!/usr/bin/env python3
"""Status messages and counts an operator reads after syncs (issue 16, items
8 and 9), with the demo's catalog (deploy/sample-catalog.xml):

    CAS (top) -> P01 -> S01

  - In `history` (oldest first) a sync's messages come in the order they
    happened: 6701 started, 6704 fetching / pulling, 6702 done, then 7101
    request sent to the children. 6702 gives the expired count, and every
    site reports the same expired count for version 1 as the top.
  - An unchanged upstream sync still records 6702 (and a sync row
    "unchanged").
  - `sync --full` when nothing changed: P01 says "version stays 2 (full
    snapshot re-verified), 0 added, 0 changed, 0 removed", not a new
    version with every entry changed; and P01 keeps its change log, so S01,
    stopped at version 1 meanwhile, then pulls a delta, not a snapshot.
  - `sync` at the child P01 pulls from CAS now (or says it holds the
    parent's version already); `sync --full --wait` there re-pulls.
"""

import json
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log, wait_for  # noqa: E402

TIMEOUT = 120


def messages(site):
    """Status messages, oldest first."""
    return list(reversed(json.loads(site.cli_ok("history", "--json", "--limit", "200"))
                         ["messages"]))


def row(top, code):
    return [r for r in top.status_json()["sites"] if r["site"] == code][0]


def in_order(msgs, ids, what):
    """The first occurrence of each id after the previous one."""
    pos, seq = 0, []
    for want in ids:
        while pos < len(msgs) and msgs[pos]["msg_id"] != want:
            pos += 1
        check(pos < len(msgs), "%s: no %d after %r in %r" % (
            what, want, seq, [(m["msg_id"], m["text"][:40]) for m in msgs]))
        seq.append(msgs[pos])
        pos += 1
    return seq


def test(h):
    catalog = h.path("upstream", "catalog.xml")
    os.makedirs(os.path.dirname(catalog))
    shutil.copy(os.path.join(h.src, "deploy", "sample-catalog.xml"), catalog)
    cas = h.add_site("CAS", upstream="file://" + catalog)
    p01 = h.add_site("P01", parent=cas)
    s01 = h.add_site("S01", parent=p01, listen=False)
    # Database workers insert messages in a shuffled order here: the
    # history must still list them in the order they happened.
    shuffle = {"SITESYNC_TEST_SHUFFLE_MESSAGES": "1"}
    cas.start(env=shuffle)
    cas.cli_ok("child", "add", "P01")
    p01.start(env=shuffle)
    p01.cli_ok("child", "add", "S01")
    s01.start()
    cas.cli_ok("sync", "--yes", "--wait", "--timeout", str(TIMEOUT), timeout=TIMEOUT + 10)
    st1 = h.wait_converged(cas, [p01, s01], TIMEOUT, "version 1 everywhere")

    # Order and contents at the top and at a middle site.
    expired = row(cas, "CAS")["expired"]
    check(expired > 0, "the sample catalog gives %r expired at CAS" % expired)
    seq = in_order(messages(cas), [6701, 6704, 6702, 7101], "CAS")
    check("%d expired" % expired in seq[2]["text"], "CAS 6702: %r" % seq[2]["text"])
    wait_for(lambda: any(m["msg_id"] == 7101 for m in messages(p01)), 20, "P01's 7101")
    seq = in_order(messages(p01), [6701, 6704, 6702, 7101], "P01")
    check("version 1, %d added, 0 changed, 0 removed, %d expired" % (st1[2], expired)
          in seq[2]["text"], "P01 6702: %r" % seq[2]["text"])
    for code in ("P01", "S01"):
        got = wait_for(lambda: row(cas, code)["expired"] == expired and row(cas, code),
                       20, "%s's expired count at CAS" % code)
        check(got["expired"] == expired, "%s expired %r" % (code, got["expired"]))
    text = cas.cli_ok("history")
    lines = [ln for ln in text.splitlines() if re.search(r"\s(6701|6702|6704)\s", ln)]
    check(lines and " 6702 " in lines[0], "history text, newest first: %r" % lines[:3])
    log("messages in order; %d expired at every site" % expired)

    # An unchanged sync: 6702 and an "unchanged" sync row.
    n = len(messages(cas))
    cas.cli_ok("sync", "--yes", "--wait", "--timeout", str(TIMEOUT), timeout=TIMEOUT + 10)
    new = wait_for(lambda: [m for m in messages(cas)[n:] if m["msg_id"] == 6702] or None,
                   20, "CAS 6702 for the unchanged sync")
    check("catalog unchanged, version stays 1" in new[0]["text"], "unchanged 6702 %r" % new)
    sync0 = json.loads(cas.cli_ok("history", "--json"))["syncs"][0]
    check(sync0["result"] == "unchanged" and sync0["to_version"] == 1, "sync row %r" % sync0)

    # Version 2 while S01 is down; then a full re-pull of version 2.
    s01.stop()
    text = open(catalog).read()
    first = re.search(r"<sdp:Title>([^<]*)", text)
    text = text.replace(first.group(0), first.group(0) + " (revised)", 1)
    with open(catalog, "w") as f:
        f.write(text)
    cas.cli_ok("sync", "--yes")
    # Its 6702, not its database: the version commits a moment before the
    # message is kept, and counting messages in between took that 6702
    # for the re-pull's.
    wait_for(lambda: any(m["msg_id"] == 6702 and "version 2," in m["text"]
                         for m in messages(p01)), TIMEOUT, "P01's 6702 for version 2")
    n = len(messages(p01))
    cas.cli_ok("sync", "--yes", "--full")
    done = wait_for(lambda: [m for m in messages(p01)[n:] if m["msg_id"] == 6702] or None,
                    TIMEOUT, "P01's 6702 for the full re-pull")
    check("version stays 2 (full snapshot re-verified), 0 added, 0 changed, 0 removed"
          in done[0]["text"], "P01 6702 after --full: %r" % done[0]["text"])
    r = wait_for(lambda: row(cas, "P01")["state"] == "succeeded" and row(cas, "P01"),
                 20, "P01's row at CAS to show the re-pull")
    check(r["catalog_version"] == 2 and r["added"] == 0 and r["changed"] == 0,
          "P01 row after --full: %r" % r)
    check("Re-verified version 2 against a full snapshot" in open(p01.sync_log).read(),
          "P01 sync log has no re-verify line")
    mark = os.path.getsize(s01.sync_log)
    s01.start()
    h.wait_converged(cas, [p01, s01], TIMEOUT, "S01 to catch up")
    slog = open(s01.sync_log).read()[mark:]
    m = re.search(r"Updated \d+ items \(.*\), new catalog version is 2(.*)", slog)
    check(m and "full snapshot" not in m.group(1),
          "S01 caught up with a snapshot: P01 lost its change log:\n%s" % slog)
    log("--full kept P01's change log; S01 pulled a delta")

    # sync at a child: a pull from its parent, not a refusal.
    out = p01.cli_ok("sync", "--yes")
    check("This site already holds version 2, the version of its parent CAS: nothing to pull."
          in out, "sync at up-to-date P01: %r" % out)
    mark = os.path.getsize(p01.sync_log)
    out = p01.cli_ok("sync", "--yes", "--full", "--wait", "--timeout", str(TIMEOUT),
                     timeout=TIMEOUT + 10)
    check("Pull from parent CAS started (full snapshot) (the parent holds version 2)." in out
          and "Every site holds version 2." in out, "sync --full at P01: %r" % out)
    check("Re-verified version 2 against a full snapshot" in open(p01.sync_log).read()[mark:],
          "P01 did not re-pull on its own sync --full")
    log("sync at P01 pulls from CAS")


if __name__ == "__main__":
    harness.main(test, "messages")
