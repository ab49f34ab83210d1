"""Moving the `updates` table between databases for the baselines: its
DDL as the site schema defines it, and a binary COPY pipe."""

import os
import subprocess
import time

from harness import check

# The daemons store entry contents compressed with lz4 (storage/db.c sets
# it per session when the server has it); the baselines write theirs the
# same way, so the ratio compares the work and not the codec.
SAME_TOAST = ["-c", "SET default_toast_compression = lz4"]


def updates_ddl(h, src_db):
    """`updates` as `src_db` holds it (columns, primary key). No owner or
    grants: the site's roles need not exist where it is created."""
    pg_dump = os.path.join(h.pgbin, "pg_dump")
    return subprocess.run(h.pg._cmd([pg_dump, "-s", "-O", "-x", "-t", "updates",
                                     "-h", h.pg.sockdir, "-p", str(h.pg.PORT),
                                     "-U", h.pg.user, src_db]),
                          stdout=subprocess.PIPE, check=True, text=True).stdout


def psql_pipe(src_pg, src_db, dst_pg, dst_db, select, table):
    """COPY (SELECT) TO STDOUT binary | COPY table FROM STDIN binary;
    seconds taken."""
    a = src_pg.psql_argv(src_db) + ["-c", "COPY (%s) TO STDOUT (FORMAT binary)" % select]
    b = dst_pg.psql_argv(dst_db) + SAME_TOAST + [
        "-c", "COPY %s FROM STDIN (FORMAT binary)" % table]
    t0 = time.monotonic()
    p1 = subprocess.Popen(a, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    p2 = subprocess.Popen(b, stdin=p1.stdout, stdout=subprocess.DEVNULL)
    p1.stdout.close()
    r2 = p2.wait()
    r1 = p1.wait()
    dt = time.monotonic() - t0
    check(r1 == 0 and r2 == 0, "COPY pipe failed (%d, %d)" % (r1, r2))
    return dt
