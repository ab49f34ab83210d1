/* Supersedence expiry and purge of expired updates, on the sync's stage. */
#include "upstream/expire.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/sitesync.pb-c.h"
#include "replication/entry.h"
#include "server/errcode.h"
#include "storage/copy.h"
#include "storage/db.h"

/* Rows re-packed per cursor fetch: bounds memory on huge catalogs. */
#define FIX_BATCH 1000
#define FIX_FETCH "FETCH 1000 FROM ss_fix_cur"

/* Rows of ss_sel whose packed content disagrees with what it must say. */
static const char *const SQL_FIX_CURSOR =
	"DECLARE ss_fix_cur NO SCROLL CURSOR FOR "
	"SELECT s.update_id, s.content, e.id IS NOT NULL, i.update_id IS NOT NULL "
	"FROM ss_sel s LEFT JOIN ss_exp e ON e.id = s.update_id::text "
	"LEFT JOIN updates i ON i.update_id = s.update_id AND i.source = 'imported' "
	"WHERE (e.id IS NOT NULL) <> s.expired "
	"   OR (i.update_id IS NOT NULL AND s.source <> 'imported')";

static int fix_row(copybuf_t *cb, const char *id, const char *hex, bool expired, bool imported,
                   char *err, size_t errlen)
{
	size_t n = 0;
	unsigned char *raw = PQunescapeBytea((const unsigned char *)hex, &n);
	if (raw == NULL)
		return SS_ENOMEM;
	int ret = SS_EOK;
	uint8_t *packed = NULL;
	Sitesync__UpdateContent *u = sitesync__update_content__unpack(NULL, n, raw);
	if (u == NULL) {
		snprintf(err, errlen, "staged update %s does not decode", id);
		ret = SS_EMALF;
		goto fail;
	}
	char *old_source = u->source;
	u->expired = expired;
	if (imported)
		u->source = "imported";
	size_t len = sitesync__update_content__get_packed_size(u);
	packed = malloc(len ? len : 1);
	if (packed == NULL) {
		ret = SS_ENOMEM;
	} else {
		sitesync__update_content__pack(u, packed);
		uint8_t h[SS_DIGEST_LEN];
		ret = entry_copy_row(cb, id, 0, packed, len, h, NULL);
		if (ret == SS_EOK)
			copy_end_row(cb);
		else
			snprintf(err, errlen, "re-packed update %s is invalid", id);
	}
	/* The unpacker owns the original string, not our literal. */
	u->source = old_source;
	sitesync__update_content__free_unpacked(u, NULL);
fail:
	free(packed);
	PQfreemem(raw);
	return ret;
}

/* Re-pack the rows whose expired flag or source must change into ss_fix,
 * then swap them into ss_sel. */
static int fix_stage(PGconn *conn, upstream_job_t *job)
{
	char *err = job->err;
	size_t errlen = sizeof(job->err);
	copybuf_t cb;
	copy_init(&cb);
	int ret = db_exec(conn, "CREATE TEMP TABLE ss_fix (LIKE ss_sel) ON COMMIT DROP", err, errlen);
	if (ret == SS_EOK)
		ret = db_exec(conn, SQL_FIX_CURSOR, err, errlen);
	while (ret == SS_EOK) {
		PGresult *r = NULL;
		ret = db_query(conn, FIX_FETCH, 0, NULL, &r, err, errlen);
		if (ret != SS_EOK)
			break;
		int rows = PQntuples(r);
		if (rows == 0) {
			PQclear(r);
			break;
		}
		PGresult *c = PQexec(conn, "COPY ss_fix (" ENTRY_COPY_COLUMNS ") FROM STDIN");
		bool copying = PQresultStatus(c) == PGRES_COPY_IN;
		if (!copying) {
			db_errcopy(PQresultErrorMessage(c), err, errlen);
			ret = SS_EDB;
		}
		PQclear(c);
		for (int i = 0; i < rows && ret == SS_EOK; i++) {
			ret = fix_row(&cb, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
			              PQgetvalue(r, i, 2)[0] == 't', PQgetvalue(r, i, 3)[0] == 't',
			              err, errlen);
		}
		PQclear(r);
		if (copying) {
			/* Always end the COPY (aborted after an error) so the
			 * connection can take the ROLLBACK; the first error stands. */
			char ferr[256];
			int fin = copy_finish(conn, &cb, ferr, sizeof(ferr));
			if (ret == SS_EOK && fin != SS_EOK) {
				snprintf(err, errlen, "%s", ferr);
				ret = fin;
			}
		}
		if (rows < FIX_BATCH)
			break;
	}
	copy_clear(&cb);
	if (ret == SS_EOK)
		ret = db_exec(conn, "CLOSE ss_fix_cur; "
		              "DELETE FROM ss_sel s USING ss_fix f WHERE s.update_id = f.update_id; "
		              "INSERT INTO ss_sel SELECT * FROM ss_fix", err, errlen);
	return ret;
}

static int count_query(PGconn *conn, const char *sql, uint64_t *out, char *err, size_t errlen)
{
	PGresult *r = NULL;
	int ret = db_query(conn, sql, 0, NULL, &r, err, errlen);
	if (ret != SS_EOK)
		return ret;
	*out = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return SS_EOK;
}

int upstream_expire_settle(PGconn *conn, upstream_job_t *job)
{
	char *err = job->err;
	size_t errlen = sizeof(job->err);
	long months = 0, days = 0;
	int ret;
	if ((ret = upstream_setting_int(conn, "supersede_expire_months", 0, &months, err, errlen)) != SS_EOK ||
	    (ret = upstream_setting_int(conn, "purge_expired_days", 0, &days, err, errlen)) != SS_EOK)
		return ret;
	if (months > 1200)
		months = 1200;
	if (days > 365000)
		days = 365000;

	/*
	 * Ids superseded by a selected entry old enough. Dates are compared as
	 * ISO 8601 text (YYYY-MM-DD sorts like the date) so an odd date in a
	 * catalog cannot fail the sync; an entry without a readable date does
	 * not expire anything after a delay.
	 */
	char sql[1024], when[256] = "";
	if (months > 0)
		snprintf(when, sizeof(when),
		         "AND o.release_date ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}' "
		         "AND left(o.release_date, 10) COLLATE \"C\" <= "
		         "to_char(current_date - make_interval(months => %ld), 'YYYY-MM-DD')", months);
	if (months < 0)
		snprintf(sql, sizeof(sql), "CREATE TEMP TABLE ss_exp (id text PRIMARY KEY) ON COMMIT DROP");
	else
		snprintf(sql, sizeof(sql),
		         "CREATE TEMP TABLE ss_exp ON COMMIT DROP AS "
		         "SELECT DISTINCT lower(x) AS id FROM ss_sel o, unnest(o.supersedes) x "
		         "WHERE lower(x) <> o.update_id::text %s; "
		         "CREATE UNIQUE INDEX ON ss_exp (id); ANALYZE ss_exp", when);
	if ((ret = db_exec(conn, sql, err, errlen)) != SS_EOK ||
	    (ret = fix_stage(conn, job)) != SS_EOK)
		return ret;

	/* Newly expired: expired now, and not an expired row of the catalog held. */
	if ((ret = count_query(conn, "SELECT count(*) FROM ss_sel s WHERE s.expired AND NOT EXISTS "
	                       "(SELECT 1 FROM updates u WHERE u.update_id = s.update_id AND u.expired)",
	                       &job->expired, err, errlen)) != SS_EOK)
		return ret;

	/* When each id was first seen expired here: the purge clock. */
	if ((ret = db_exec(conn, "DELETE FROM update_expiry x WHERE NOT EXISTS "
	                   "(SELECT 1 FROM ss_sel s WHERE s.update_id = x.update_id AND s.expired); "
	                   "INSERT INTO update_expiry (update_id) SELECT update_id FROM ss_sel "
	                   "WHERE expired ON CONFLICT (update_id) DO NOTHING", err, errlen)) != SS_EOK)
		return ret;

	job->purged = 0;
	if (days <= 0)
		return SS_EOK;
	/* Imported entries are left alone: the diff never removes them. */
	snprintf(sql, sizeof(sql),
	         "CREATE TEMP TABLE ss_purge ON COMMIT DROP AS SELECT s.update_id FROM ss_sel s "
	         "JOIN update_expiry x USING (update_id) WHERE s.expired AND s.source = 'upstream' "
	         "AND x.expired_at < now() - make_interval(days => %ld); "
	         "DELETE FROM ss_sel s USING ss_purge p WHERE s.update_id = p.update_id", days);
	if ((ret = db_exec(conn, sql, err, errlen)) != SS_EOK)
		return ret;
	/* Only those still in the catalog are purged by this version. */
	return count_query(conn, "SELECT count(*) FROM ss_purge p JOIN updates u USING (update_id)",
	                   &job->purged, err, errlen);
}
