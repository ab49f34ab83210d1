"""Figure 3's comparison: PostgreSQL logical replication cascaded through
the same tree (1 + 3 + 9 databases, three levels) carrying the same change.

A second private cluster with wal_level = logical (the benchmark cluster
runs without it, as a site's would). Every database gets `updates` with
the sites' DDL; the top gets the top site's rows. Each mid database
subscribes to the top and publishes onward; each leaf subscribes to one
mid. Slots are made first and subscriptions take them (create_slot =
false): a subscription to the same cluster cannot make its own slot.

The change: 100 rows of the top get a new title, revision and content
(the content grows by one byte, so every changed row's whole content
travels, as with a sitesync delta), in one transaction. Start: the time
right after that transaction committed. End: the last of the 12 other
databases applying its last row, recorded by a row trigger
(ENABLE ALWAYS, so it fires for the apply worker, whose search_path is
empty) into a local table.
"""

import statistics
import subprocess

import harness
from harness import check, log, wait_for, NotYet
from pgcopy import psql_pipe, updates_ddl

# Its best case: commits flush WAL at once (fsync stays off), or a
# walsender waits for the WAL writer (wal_writer_delay, 200 ms) per level.
LR_OPTS = ("-c synchronous_commit=on -c wal_level=logical -c max_replication_slots=32 -c max_wal_senders=32 "
           "-c max_logical_replication_workers=24 -c max_worker_processes=40 "
           "-c max_sync_workers_per_subscription=2")

ARRIVALS = """
SET search_path = public;
CREATE TABLE arrivals (at timestamptz NOT NULL);
CREATE FUNCTION note_arrival() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO public.arrivals VALUES (clock_timestamp()); RETURN NULL; END $$;
CREATE TRIGGER note_arrival AFTER UPDATE ON updates FOR EACH ROW EXECUTE FUNCTION note_arrival();
ALTER TABLE updates ENABLE ALWAYS TRIGGER note_arrival;
"""


def cascade(b, top_db, n_changed, runs):
    """Median ms from the top's commit to all 12 others, per run."""
    h = b.h
    lr = harness.PgCluster(h.root, h.pgbin, name="pg-logical")
    try:
        lr.init_and_start(LR_OPTS)
        return _measure(h, lr, top_db, n_changed, runs)
    finally:
        lr.stop()


def _measure(h, lr, top_db, n_changed, runs):
    ddl = updates_ddl(h, top_db)
    top = "lr_top"
    mids = ["lr_m%02d" % i for i in range(3)]
    leaves = ["lr_l%02d" % i for i in range(9)]
    for db in [top] + mids + leaves:
        lr.create_db(db)
        p = subprocess.run(lr.psql_argv(db), input=ddl + ARRIVALS, text=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        check(p.returncode == 0, "schema for %s: %s" % (db, p.stderr[-500:]))
    psql_pipe(h.pg, top_db, lr, top, "SELECT * FROM updates", "updates")
    total = int(lr.query(top, "SELECT count(*) FROM updates"))
    for db in [top] + mids:
        lr.query(db, "CREATE PUBLICATION p FOR TABLE updates")

    def subscribe(sub_db, pub_db, slot):
        lr.query(pub_db, "SELECT pg_create_logical_replication_slot('%s', 'pgoutput')" % slot)
        lr.query(sub_db, "CREATE SUBSCRIPTION s CONNECTION '%s' PUBLICATION p "
                 "WITH (create_slot = false, slot_name = '%s', copy_data = true, "
                 "synchronous_commit = 'on')"
                 % (lr.conninfo(pub_db), slot))

    def synced(dbs):
        def done():
            for db in dbs:
                st = lr.query(db, "SELECT coalesce(bool_and(srsubstate = 'r'), false) "
                              "FROM pg_subscription_rel")
                n = int(lr.query(db, "SELECT count(*) FROM updates"))
                if st != "t" or n != total:
                    raise NotYet("%s: state %s, %d of %d rows" % (db, st, n, total))
            return True
        wait_for(done, 300, "logical replication initial copy")

    for i, m in enumerate(mids):
        subscribe(m, top, "m%02d" % i)
    synced(mids)
    for i, leaf in enumerate(leaves):
        subscribe(leaf, mids[i // 3], "l%02d" % i)
    synced(leaves)
    log("fig 3: logical replication tree of 13 databases holds %d rows" % total)

    others = mids + leaves
    times, mid_times = [], []
    for r in range(runs):
        for db in others:
            lr.query(db, "TRUNCATE arrivals")
        out = lr.query(top, "UPDATE updates SET title = title || ' (lr %d)', "
                       "revision = revision + 1, content = content || '\\x20'::bytea "
                       "WHERE update_id IN (SELECT update_id FROM updates ORDER BY update_id "
                       "LIMIT %d OFFSET %d); SELECT extract(epoch FROM clock_timestamp())"
                       % (r, n_changed, r * n_changed))
        t0 = float(out.split()[-1])
        ends = {}

        def arrived():
            for db in others:
                if db in ends:
                    continue
                row = lr.query(db, "SELECT count(*), extract(epoch FROM max(at)) FROM arrivals")
                n, at = row.split("|")
                if int(n) == n_changed:
                    ends[db] = float(at)
            if len(ends) < len(others):
                raise NotYet("%d of %d databases have the change" % (len(ends), len(others)))
            return True
        wait_for(arrived, 120, "the change at every logical replica")
        dt = (max(ends.values()) - t0) * 1000
        mid = (max(ends[m] for m in mids) - t0) * 1000
        times.append(dt)
        mid_times.append(mid)
        log("fig 3: logical replication: %d rows at all 13 databases %.0f ms after the top "
            "committed (mid level %.0f ms)" % (n_changed, dt, mid))
    return statistics.median(times), statistics.median(mid_times), times
