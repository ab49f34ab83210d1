/* One update from a catalog into the top site's catalog, outside the selection. */
#include "upstream/import.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog/state.h"
#include "catalog/txn.h"
#include "common/errcode.h"
#include "storage/db.h"
#include "upstream/fetch.h"

/* Resolve the source to a local file, downloading http(s) URLs. */
static int import_fetch(upstream_job_t *job, char *download, size_t dlen, const char **path)
{
	const char *url = job->url;
	*path = NULL;
	download[0] = '\0';
	if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
		/* Per id: two imports of different updates may run at once. */
		snprintf(download, dlen, "%s/import-%s.download", job->state_dir, job->import_id);
		fetch_opts_t fo = {
			.url = url, .ca_file = job->ca_file, .proxy = job->proxy,
			.connect_timeout = job->connect_timeout, .timeout = job->timeout,
			.ignore_cache = true, .retries = 3, .max_bytes = job->max_bytes,
		};
		fetch_result_t fr;
		memset(&fr, 0, sizeof(fr));
		int ret = fetch_to_file(&fo, download, &fr, job->err, sizeof(job->err));
		job->fetched_bytes = fr.bytes;
		fetch_result_clear(&fr);
		if (ret != SS_EOK)
			return ret;
		*path = download;
		return SS_EOK;
	}
	const char *p = upstream_file_path(url);
	if (p == NULL && strstr(url, "://") != NULL) {
		snprintf(job->err, sizeof(job->err), "cannot import from %.200s: only http://, https://, "
		         "file:// and local files are supported", url);
		return SS_EINVAL;
	}
	p = p ? p : url;
	if (access(p, R_OK) != 0) {
		snprintf(job->err, sizeof(job->err), "cannot read catalog %.200s: %s", p, strerror(errno));
		return SS_EFETCH;
	}
	*path = p;
	return SS_EOK;
}

static int read_revision(PGconn *conn, upstream_job_t *job)
{
	PGresult *r = NULL;
	const char *p[] = { job->import_id };
	int ret = db_query(conn, "SELECT revision FROM updates WHERE update_id = $1", 1, p, &r,
	                   job->err, sizeof(job->err));
	if (ret != SS_EOK)
		return ret;
	if (PQntuples(r) == 1) {
		job->revision = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
	} else {
		snprintf(job->err, sizeof(job->err), "update %s vanished during the import", job->import_id);
		ret = SS_EDB;
	}
	PQclear(r);
	return ret;
}

int upstream_import_work(PGconn *conn, void *arg)
{
	upstream_job_t *job = arg;
	char download[1024];
	const char *path = NULL;
	digest_t held_digest;
	uint64_t held_entries = 0;
	job->err[0] = '\0';

	int ret = import_fetch(job, download, sizeof(download), &path);
	if (ret != SS_EOK)
		goto out;
	atomic_store(&job->phase, 1);
	if ((ret = db_exec(conn, "BEGIN", job->err, sizeof(job->err))) != SS_EOK)
		goto out;
	/* FOR UPDATE: serialises with an upstream sync committing meanwhile. */
	if ((ret = state_read(conn, true, &job->held, &held_digest, &held_entries,
	                      job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = upstream_stage(conn, job, path)) != SS_EOK)
		goto rollback;
	atomic_store(&job->phase, 2);
	/* A catalog listing the package twice: keep one, as the sync does.
	 * The staged content already says source = imported: nothing to fix. */
	if ((ret = db_exec(conn, "CREATE TEMP TABLE ss_sel ON COMMIT DROP AS "
	                   "SELECT DISTINCT ON (update_id) update_id, seq, expired, source, false AS fix "
	                   "FROM ss_up ORDER BY update_id, seq",
	                   job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = upstream_diff_commit(conn, job, false, &held_digest, held_entries)) != SS_EOK ||
	    (ret = read_revision(conn, job)) != SS_EOK)
		goto rollback;
	job->selected = 1;
rollback: /* also reached with ret == SS_EOK, to commit */
	ret = txn_end(conn, ret, job->err, sizeof(job->err));
out:
	ss_err_default(ret, job->err, sizeof(job->err));
	if (download[0] != '\0')
		unlink(download);
	return ret;
}
