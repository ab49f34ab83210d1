/* First sync into an empty catalog: rows straight into updates. */
#include "upstream/first.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog/state.h"
#include "common/errcode.h"
#include "storage/db.h"
#include "upstream/expire.h"

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool sel_has(const first_sync_t *f, int kind, const char *id)
{
	const char *key = id ? id : "";
	return bsearch(&key, f->sel[kind], f->nsel[kind], sizeof(char *), cmp_str) != NULL;
}

static bool sel_any(const first_sync_t *f, int kind, char *const *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (sel_has(f, kind, ids[i]))
			return true;
	return false;
}

bool first_sync_selected(const first_sync_t *f, const Sitesync__UpdateContent *u)
{
	/* SQL_SELECT: a kind with nothing selected does not filter, and a
	 * language-neutral package passes any language selection. */
	if (f->nsel[FIRST_PRODUCT] && !sel_any(f, FIRST_PRODUCT, u->products, u->n_products))
		return false;
	if (f->nsel[FIRST_CLASSIFICATION] && !sel_has(f, FIRST_CLASSIFICATION, u->classification))
		return false;
	if (f->nsel[FIRST_LANGUAGE] && u->n_languages > 0 &&
	    !sel_any(f, FIRST_LANGUAGE, u->languages, u->n_languages))
		return false;
	return true;
}

static int load_selection(first_sync_t *f, PGconn *conn, char *err, size_t errlen)
{
	static const char *const kinds[FIRST_KINDS] = { "product", "classification", "language" };
	PGresult *r = NULL;
	int ret = db_query(conn, "SELECT kind, id FROM categories WHERE selected "
	                   "AND kind IN ('product', 'classification', 'language')",
	                   0, NULL, &r, err, errlen);
	if (ret != SS_EOK)
		return ret;
	int rows = PQntuples(r);
	for (int k = 0; k < FIRST_KINDS; k++) {
		f->sel[k] = calloc((size_t)rows + 1, sizeof(char *));
		if (f->sel[k] == NULL) {
			ret = SS_ENOMEM;
			goto fail;
		}
	}
	for (int i = 0; i < rows; i++) {
		int k = 0;
		while (k < FIRST_KINDS && strcmp(PQgetvalue(r, i, 0), kinds[k]) != 0)
			k++;
		if (k == FIRST_KINDS)
			continue;
		char *id = strdup(PQgetvalue(r, i, 1));
		if (id == NULL) {
			ret = SS_ENOMEM;
			goto fail;
		}
		f->sel[k][f->nsel[k]++] = id;
	}
	for (int k = 0; k < FIRST_KINDS; k++)
		qsort(f->sel[k], f->nsel[k], sizeof(char *), cmp_str);
fail:
	PQclear(r);
	return ret;
}

static int load_expiry_rule(first_sync_t *f, PGconn *conn, long months, char *err,
                            size_t errlen)
{
	f->expire_months = months;
	if (months <= 0)
		return SS_EOK;
	if (f->expire_months > 1200)
		f->expire_months = 1200;
	/* The transaction's current_date: the one upstream_expire_settle() uses. */
	char m[24];
	snprintf(m, sizeof(m), "%ld", f->expire_months);
	const char *p[] = { m };
	PGresult *r = NULL;
	int ret = db_query(conn, "SELECT to_char(current_date - make_interval(months => $1::int), "
	                   "'YYYY-MM-DD')", 1, p, &r, err, errlen);
	if (ret == SS_EOK)
		snprintf(f->expire_cutoff, sizeof(f->expire_cutoff), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return ret;
}

bool first_sync_supersedes(const first_sync_t *f, const Sitesync__UpdateContent *o)
{
	if (f->expire_months < 0 || o->n_supersedes == 0)
		return false;
	if (f->expire_months == 0)
		return true;
	/* As expire.c: '^[0-9]{4}-[0-9]{2}-[0-9]{2}', then the first ten
	 * characters compared as C-collated text. */
	const char *d = o->release_date;
	if (d == NULL || strlen(d) < 10)
		return false;
	for (int i = 0; i < 10; i++) {
		bool dash = i == 4 || i == 7;
		if (dash ? d[i] != '-' : (d[i] < '0' || d[i] > '9'))
			return false;
	}
	return memcmp(d, f->expire_cutoff, 10) <= 0;
}

/* An unlinked scratch file: nothing is left behind by a crash. */
static int open_scratch(first_sync_t *f, const char *dir, char *err, size_t errlen)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/upstream.stage.XXXXXX", dir);
	int fd = mkstemp(path);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create a scratch file in %s: %s", dir, strerror(errno));
		return SS_EIO;
	}
	unlink(path);
	f->meta = fdopen(fd, "w+");
	if (f->meta == NULL) {
		close(fd);
		return SS_ENOMEM;
	}
	return SS_EOK;
}

int first_sync_begin(first_sync_t *f, PGconn *conn, upstream_job_t *job, long months, bool *use)
{
	memset(f, 0, sizeof(*f));
	idset_init(&f->ids);
	copy_init(&f->meta_cb);
	*use = false;
	/* Several sources: each may select by itself, and the counts per
	 * source come from the diff (sources.h). */
	if (job->import_id != NULL || job->staged_only || job->n_sources > 0)
		return SS_EOK;
	PGresult *r = NULL;
	int ret = db_query(conn, "SELECT NOT EXISTS (SELECT 1 FROM updates)", 0, NULL, &r,
	                   job->err, sizeof(job->err));
	if (ret != SS_EOK)
		return ret;
	bool empty = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (!empty)
		return SS_EOK;
	if ((ret = load_selection(f, conn, job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = load_expiry_rule(f, conn, months, job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = open_scratch(f, job->state_dir, job->err, sizeof(job->err))) != SS_EOK)
		return ret;
	*use = true;
	return SS_EOK;
}

int first_sync_meta_flush(first_sync_t *f, size_t threshold, char *err, size_t errlen)
{
	copybuf_t *cb = &f->meta_cb;
	if (cb->len == 0 || cb->len < threshold)
		return SS_EOK;
	if (fwrite(cb->buf, 1, cb->len, f->meta) != cb->len) {
		snprintf(err, errlen, "cannot write the stage scratch file: %s", strerror(errno));
		return SS_EIO;
	}
	cb->len = 0;
	return SS_EOK;
}

int first_sync_load_stage(first_sync_t *f, PGconn *conn, const char *copy_sql,
                          char *err, size_t errlen)
{
	int ret = first_sync_meta_flush(f, 0, err, errlen);
	if (ret != SS_EOK)
		return ret;
	if (fflush(f->meta) != 0 || fseek(f->meta, 0, SEEK_SET) != 0) {
		snprintf(err, errlen, "cannot read the stage scratch file: %s", strerror(errno));
		return SS_EIO;
	}
	PGresult *r = PQexec(conn, copy_sql);
	if (PQresultStatus(r) != PGRES_COPY_IN) {
		db_errcopy(PQresultErrorMessage(r), err, errlen);
		PQclear(r);
		return SS_EDB;
	}
	PQclear(r);
	copybuf_t *cb = &f->meta_cb;
	size_t want = COPY_PIECE_BYTES;
	if (cb->cap < want) {
		char *nb = realloc(cb->buf, want);
		if (nb == NULL)
			ret = SS_ENOMEM;
		else {
			cb->buf = nb;
			cb->cap = want;
		}
	}
	size_t n;
	while (ret == SS_EOK && (n = fread(cb->buf, 1, want, f->meta)) > 0) {
		cb->len = n;
		ret = copy_flush(conn, cb, 0, err, errlen);
	}
	if (ret == SS_EOK && ferror(f->meta)) {
		snprintf(err, errlen, "cannot read the stage scratch file: %s", strerror(errno));
		ret = SS_EIO;
	}
	cb->len = 0;
	int fin = copy_finish(conn, cb, ret == SS_EOK ? err : NULL, ret == SS_EOK ? errlen : 0);
	return ret != SS_EOK ? ret : fin;
}

/* Rows whose expired flag (or source) the settled verdict changes. */
static const char *const SQL_FIRST_AMEND =
	"UPDATE updates u SET expired = f.expired, source = f.source, content = f.content, "
	"  entry_hash = sha256(int4send(1) || f.content) "
	"FROM (SELECT s.update_id, s.expired, s.source, " UPSTREAM_SPLICE_SQL("w.content") " AS content "
	"      FROM ss_sel s JOIN ss_up p ON p.seq = s.seq "
	"      JOIN updates w ON w.update_id = s.update_id WHERE s.fix) f "
	"WHERE u.update_id = f.update_id";

int first_sync_commit(PGconn *conn, upstream_job_t *job, first_sync_t *f)
{
	char *err = job->err;
	size_t errlen = sizeof(job->err);
	/* What was written must be what SQL_SELECT picked: the same ids (no
	 * more: updates holds exactly f->written distinct ids), each from the
	 * same package of a duplicated id (its staged hash). */
	uint64_t v[3];
	int ret = db_query_u64(conn, "SELECT count(*), count(*) FILTER (WHERE u.entry_hash = p.hash1), "
	                     "(SELECT count(*) FROM ss_sel) FROM ss_pick s JOIN ss_up p ON p.seq = s.seq "
	                     "LEFT JOIN updates u ON u.update_id = s.update_id",
	                     0, NULL, v, 3, err, errlen);
	if (ret != SS_EOK)
		return ret;
	if (v[0] != f->written || v[1] != f->written) {
		snprintf(err, errlen, "first sync wrote %" PRIu64 " entries, the selection picks %" PRIu64
		         " (%" PRIu64 " match)", f->written, v[0], v[1]);
		return SS_EAGAIN;
	}
	uint64_t kept = f->written;
	/* Purged by expiry maintenance: never part of this version. */
	if (v[2] < f->written) {
		uint64_t gone = 0;
		ret = db_query_u64(conn, "WITH d AS (DELETE FROM updates u WHERE NOT EXISTS "
		                 "(SELECT 1 FROM ss_sel s WHERE s.update_id = u.update_id) RETURNING 1) "
		                 "SELECT count(*) FROM d", 0, NULL, &gone, 1, err, errlen);
		if (ret != SS_EOK)
			return ret;
		kept -= gone;
	}
	if ((ret = db_exec(conn, SQL_FIRST_AMEND, err, errlen)) != SS_EOK)
		return ret;
	/* Counted as a staged sync into an empty catalog would count them. */
	if ((ret = db_query_u64(conn, "SELECT count(*) FROM ss_sel WHERE expired", 0, NULL,
	                      &job->expired, 1, err, errlen)) != SS_EOK)
		return ret;
	job->purged = 0;
	job->added = kept;
	job->changed = job->removed = 0;
	job->version = job->held;
	digest_zero(&job->digest);
	job->entries = 0;
	if (kept == 0) {
		job->unchanged = true;
		return SS_EOK;
	}
	job->version = job->held + 1;
	char ver[24];
	snprintf(ver, sizeof(ver), "%" PRIu64, job->version);
	const char *p[] = { ver };
	if ((ret = db_execp(conn, "INSERT INTO changes (version, update_id) "
	                    "SELECT $1::bigint, update_id FROM updates", 1, p, err, errlen)) != SS_EOK ||
	    (ret = state_sum_hashes(conn, "SELECT entry_hash FROM updates", &job->digest,
	                            err, errlen)) != SS_EOK)
		return ret;
	job->entries = kept;
	return state_commit_version(conn, job->version, &job->digest, job->entries, job->added,
	                            0, 0, job->expired, false, job->keep_versions, err, errlen);
}

void first_sync_end(first_sync_t *f)
{
	for (int k = 0; k < FIRST_KINDS; k++) {
		for (size_t i = 0; i < f->nsel[k]; i++)
			free(f->sel[k][i]);
		free(f->sel[k]);
		f->sel[k] = NULL;
		f->nsel[k] = 0;
	}
	idset_clear(&f->ids);
	copy_clear(&f->meta_cb);
	if (f->meta != NULL)
		fclose(f->meta);
	f->meta = NULL;
}
