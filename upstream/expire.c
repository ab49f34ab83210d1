/* Supersedence expiry and purge of expired updates, on the sync's stage. */
#include "upstream/expire.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"
#include "storage/db.h"

static bool read_varint(const uint8_t *p, size_t n, size_t *off, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && *off < n; shift += 7) {
		uint8_t b = p[(*off)++];
		*v |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0)
			return true;
	}
	return false;
}

bool upstream_expire_split(const uint8_t *p, size_t n, uint32_t out[3])
{
	size_t off = 0, cut = n, exp_len = 0, src_len = 0;
	uint64_t last = 0;
	bool cut_set = false;
	if (n > UINT32_MAX)
		return false;
	while (off < n) {
		size_t start = off;
		uint64_t key, v;
		if (!read_varint(p, n, &off, &key))
			return false;
		uint64_t field = key >> 3;
		if (field == 0 || field < last || (field == last && field >= 17))
			return false;
		last = field;
		switch (key & 7) {
		case 0:
			if (!read_varint(p, n, &off, &v))
				return false;
			break;
		case 1:
			v = 8;
			goto skip;
		case 5:
			v = 4;
			goto skip;
		case 2:
			if (!read_varint(p, n, &off, &v))
				return false;
		skip:
			if (v > n - off)
				return false;
			off += v;
			break;
		default:
			return false;
		}
		if (field >= 17 && !cut_set) {
			cut = start;
			cut_set = true;
		}
		if (field == 17)
			exp_len = off - start;
		else if (field == 18 && start == cut + exp_len)
			src_len = off - start;
		else if (field == 18)
			return false;
	}
	out[0] = (uint32_t)cut;
	out[1] = (uint32_t)exp_len;
	out[2] = (uint32_t)src_len;
	return true;
}

size_t upstream_expire_flip(const uint8_t *p, size_t n, const uint32_t sp[3], bool expired,
                            uint8_t *out)
{
	static const uint8_t exp_true[3] = { 0x88, 0x01, 0x01 };
	size_t k = sp[0], rest = (size_t)sp[0] + sp[1];
	memcpy(out, p, sp[0]);
	if (expired) {
		memcpy(out + k, exp_true, sizeof(exp_true));
		k += sizeof(exp_true);
	}
	memcpy(out + k, p + rest, n - rest);
	return k + n - rest;
}

/* What each selected entry must say, and whether its staged bytes do. */
static const char *const SQL_SETTLE =
	"CREATE TEMP TABLE ss_sel ON COMMIT DROP AS "
	"SELECT p.update_id, p.seq, x.expired, x.source, "
	"  (x.expired <> p.expired OR x.source <> p.source) AS fix "
	"FROM ss_pick p LEFT JOIN ss_exp e ON e.id = p.update_id::text "
	"LEFT JOIN updates i ON i.update_id = p.update_id AND i.source = 'imported' "
	"CROSS JOIN LATERAL (SELECT e.id IS NOT NULL AS expired, "
	"  CASE WHEN i.update_id IS NOT NULL THEN 'imported' ELSE p.source END AS source) x; "
	"CREATE UNIQUE INDEX ON ss_sel (update_id); ANALYZE ss_sel";

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
		         "SELECT DISTINCT lower(x) AS id FROM ss_pick o, unnest(o.supersedes) x "
		         "WHERE lower(x) <> o.update_id::text %s; "
		         "CREATE UNIQUE INDEX ON ss_exp (id); ANALYZE ss_exp", when);
	if ((ret = db_exec(conn, sql, err, errlen)) != SS_EOK ||
	    (ret = db_exec(conn, SQL_SETTLE, err, errlen)) != SS_EOK)
		return ret;

	/* Newly expired: expired now, and not an expired row of the catalog held. */
	if ((ret = db_query_u64(conn, "SELECT count(*) FROM ss_sel s WHERE s.expired AND NOT EXISTS "
	                        "(SELECT 1 FROM updates u WHERE u.update_id = s.update_id AND u.expired)",
	                        0, NULL, &job->expired, 1, err, errlen)) != SS_EOK)
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
	return db_query_u64(conn, "SELECT count(*) FROM ss_purge p JOIN updates u USING (update_id)",
	                    0, NULL, &job->purged, 1, err, errlen);
}
