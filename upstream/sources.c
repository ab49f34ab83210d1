/* Several sources in one sync: seq ranges, own selections, per-source counts. */
#include "upstream/sources.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/errcode.h"
#include "storage/db.h"

/* Configured sources in order ("upstream" first); a name no longer
 * configured appears only through the entries it loses (ord 1000). */
static const char *const SQL_SRCS_TABLE =
	"CREATE TEMP TABLE ss_srcs (ord integer NOT NULL, name text NOT NULL, "
	"lo bigint NOT NULL, hi bigint NOT NULL, products text[], classifications text[], "
	"languages text[]) ON COMMIT DROP";

/* NULL stays NULL (the site's selection); '' cannot happen (conf.c). */
static const char *const SQL_SRCS_ROW =
	"INSERT INTO ss_srcs VALUES ($1::integer, $2, $3::bigint, $4::bigint, "
	"string_to_array($5, ','), string_to_array($6, ','), string_to_array($7, ','))";

/*
 * Added and changed entries belong to the source whose stage row was
 * selected; a removed one to the source update_sources names (the
 * [upstream] catalog when it names none: entries from before sources
 * were configured).
 */
static const char *const SQL_COUNTS =
	"WITH d AS ("
	"  SELECT r.name, d.kind FROM ss_diff d JOIN ss_sel s USING (update_id) "
	"  JOIN ss_srcs r ON s.seq >= r.lo AND s.seq < r.hi WHERE d.kind IN ('a', 'c') "
	"  UNION ALL "
	"  SELECT coalesce(o.source, 'upstream'), d.kind FROM ss_diff d "
	"  LEFT JOIN update_sources o USING (update_id) WHERE d.kind = 'r'), "
	"n AS (SELECT ord, name FROM ss_srcs "
	"  UNION SELECT 1000, name FROM d WHERE name NOT IN (SELECT name FROM ss_srcs)) "
	"SELECT n.name, count(d.kind) FILTER (WHERE d.kind = 'a'), "
	"  count(d.kind) FILTER (WHERE d.kind = 'c'), count(d.kind) FILTER (WHERE d.kind = 'r') "
	"FROM n LEFT JOIN d USING (name) GROUP BY n.ord, n.name ORDER BY n.ord, n.name";

static const char *const SQL_OWNERS =
	"DELETE FROM update_sources o WHERE NOT EXISTS "
	"  (SELECT 1 FROM ss_sel s WHERE s.update_id = o.update_id); "
	"INSERT INTO update_sources (update_id, source) "
	"SELECT s.update_id, r.name FROM ss_sel s JOIN ss_srcs r ON s.seq >= r.lo AND s.seq < r.hi "
	"ON CONFLICT (update_id) DO UPDATE SET source = EXCLUDED.source "
	"WHERE update_sources.source <> EXCLUDED.source";

static int srcs_row(PGconn *conn, upstream_job_t *job, int ord, const char *name, uint64_t lo,
                    uint64_t hi, const upstream_source_t *src)
{
	char o[16], l[24], h[24];
	snprintf(o, sizeof(o), "%d", ord);
	snprintf(l, sizeof(l), "%" PRIu64, lo);
	snprintf(h, sizeof(h), "%" PRIu64, hi);
	const char *p[] = { o, name, l, h, src ? src->products : NULL,
	                    src ? src->classifications : NULL, src ? src->languages : NULL };
	return db_execp(conn, SQL_SRCS_ROW, 7, p, job->err, sizeof(job->err));
}

int sources_stage_table(PGconn *conn, upstream_job_t *job)
{
	int ret = db_exec(conn, SQL_SRCS_TABLE, job->err, sizeof(job->err));
	/* The [upstream] catalog's rows come first, up to the first source's. */
	uint64_t end = job->n_sources > 0 ? job->sources[0].seq_lo : (uint64_t)INT32_MAX + 1;
	if (ret == SS_EOK)
		ret = srcs_row(conn, job, 0, "upstream", 0, end, NULL);
	for (size_t i = 0; ret == SS_EOK && i < job->n_sources; i++) {
		const upstream_source_t *src = &job->sources[i];
		ret = srcs_row(conn, job, (int)i + 1, src->name, src->seq_lo, src->seq_hi, src);
	}
	/* Its true size: unanalysed, the planner guesses hundreds of rows, so
	 * the selection's join over every staged row looks costly enough to
	 * JIT-compile (~0.35 s of a 200,000-entry sync, measured). */
	if (ret == SS_EOK)
		ret = db_exec(conn, "ANALYZE ss_srcs", job->err, sizeof(job->err));
	return ret;
}

/* "upstream: 3 added, 0 changed, 0 removed; dell: ..." from SQL_COUNTS. */
static void by_source_text(PGresult *r, char *out, size_t len)
{
	size_t off = 0;
	out[0] = '\0';
	for (int i = 0; i < PQntuples(r) && off < len; i++) {
		int n = snprintf(out + off, len - off, "%s%s: %s added, %s changed, %s removed",
		                 i ? "; " : "", PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
		                 PQgetvalue(r, i, 2), PQgetvalue(r, i, 3));
		if (n < 0)
			break;
		off += (size_t)n;
	}
}

int sources_settle(PGconn *conn, upstream_job_t *job)
{
	job->by_source[0] = '\0';
	bool track = job->n_sources > 0;
	PGresult *r = NULL;
	int ret;
	if (!track) {
		/* Sources were configured before: name the entries they lose, once. */
		ret = db_query(conn, "SELECT EXISTS (SELECT 1 FROM update_sources)", 0, NULL, &r,
		               job->err, sizeof(job->err));
		if (ret != SS_EOK)
			return ret;
		track = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
		PQclear(r);
		r = NULL;
	}
	if (!track)
		return SS_EOK;
	/* A first sync written as parsed has no diff; sources never take
	 * that way (first.c), so only stale owners can be left here. */
	if (!job->unchanged && !job->first_direct) {
		ret = db_query(conn, SQL_COUNTS, 0, NULL, &r, job->err, sizeof(job->err));
		if (ret != SS_EOK)
			return ret;
		by_source_text(r, job->by_source, sizeof(job->by_source));
		PQclear(r);
	}
	if (job->n_sources == 0)
		return db_exec(conn, "DELETE FROM update_sources", job->err, sizeof(job->err));
	return db_exec(conn, SQL_OWNERS, job->err, sizeof(job->err));
}
