/* Remove one hand-imported update: one deletion, one new catalog version. */
#include "upstream/remove.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/state.h"
#include "catalog/txn.h"
#include "common/errcode.h"
#include "storage/db.h"
#include "upstream/sync.h"

/* The row to delete, checked: present and imported. Its hash leaves the digest. */
static int check_row(PGconn *conn, upstream_job_t *job, digest_t *minus)
{
	const char *p[] = { job->import_id };
	PGresult *r = NULL;
	int ret = db_query(conn, "SELECT source, revision, entry_hash FROM updates "
	                   "WHERE update_id::text = $1",
	                   1, p, &r, job->err, sizeof(job->err));
	if (ret != SS_EOK)
		return ret;
	if (PQntuples(r) != 1) {
		snprintf(job->err, sizeof(job->err), "no update %s in the catalog", job->import_id);
		ret = SS_ENOENT;
	} else if (strcmp(PQgetvalue(r, 0, 0), "imported") != 0) {
		/* Upstream entries follow the selection; removing one here would
		 * only last until the next sync brings it back. */
		snprintf(job->err, sizeof(job->err), "update %s came from upstream, not from "
		         "import-update: deselect its product or classification instead",
		         job->import_id);
		ret = SS_EDENIED;
	} else {
		job->revision = (uint32_t)strtoul(PQgetvalue(r, 0, 1), NULL, 10);
		ret = state_sum_hash_column(r, 2, false, minus, job->err, sizeof(job->err));
	}
	PQclear(r);
	return ret;
}

int upstream_remove_work(PGconn *conn, void *arg)
{
	upstream_job_t *job = arg;
	digest_t held_digest, minus;
	uint64_t held_entries = 0;
	job->err[0] = '\0';
	digest_zero(&minus);

	int ret = db_exec(conn, "BEGIN", job->err, sizeof(job->err));
	if (ret != SS_EOK)
		goto out;
	/* FOR UPDATE: serialises with an upstream sync committing meanwhile. */
	if ((ret = state_read(conn, true, &job->held, &held_digest, &held_entries,
	                      job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = check_row(conn, job, &minus)) != SS_EOK)
		goto end;
	job->version = job->held + 1;
	char v[24];
	snprintf(v, sizeof(v), "%" PRIu64, job->version);
	const char *p[] = { job->import_id, v };
	if ((ret = db_execp(conn, "DELETE FROM updates WHERE update_id::text = $1", 1, p,
	                    job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = db_execp(conn, "DELETE FROM update_expiry WHERE update_id::text = $1", 1, p,
	                    job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = db_execp(conn, "INSERT INTO changes (version, update_id) VALUES ($2::bigint, "
	                    "$1::uuid)", 2, p, job->err, sizeof(job->err))) != SS_EOK)
		goto end;
	job->digest = held_digest;
	digest_sub(&job->digest, minus.b);
	job->entries = held_entries - 1;
	job->removed = 1;
	ret = state_commit_version(conn, job->version, &job->digest, job->entries, 0, 0, 1, 0,
	                           false, job->keep_versions, job->err, sizeof(job->err));
end:
	ret = txn_end(conn, ret, job->err, sizeof(job->err));
out:
	ss_err_default(ret, job->err, sizeof(job->err));
	return ret;
}
