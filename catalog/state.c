/* Catalog state: the version, digest and entry count a site holds, and the
 * record of each committed version. Shared by the applies of pulls and
 * bundles (replication/) and the top site's upstream syncs (upstream/). */
#include "catalog/state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"
#include "storage/db.h"

static int bytea_digest(PGresult *r, int row, int col, uint8_t out[SS_DIGEST_LEN])
{
	size_t n = 0;
	unsigned char *d = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &n);
	int ret = (d && n == SS_DIGEST_LEN) ? SS_EOK : SS_EDB;
	if (ret == SS_EOK)
		memcpy(out, d, SS_DIGEST_LEN);
	PQfreemem(d);
	return ret;
}

int state_read(PGconn *conn, bool lock, uint64_t *version, digest_t *digest,
               uint64_t *entries, char *err, size_t errlen)
{
	PGresult *r = NULL;
	int ret = db_query(conn, lock ? "SELECT version, digest, entries FROM catalog_state FOR UPDATE"
	                              : "SELECT version, digest, entries FROM catalog_state",
	                   0, NULL, &r, err, errlen);
	if (ret != SS_EOK)
		return ret;
	if (PQntuples(r) != 1 || bytea_digest(r, 0, 1, digest->b) != SS_EOK) {
		snprintf(err, errlen, "catalog_state is damaged");
		PQclear(r);
		return SS_EDB;
	}
	*version = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	*entries = strtoull(PQgetvalue(r, 0, 2), NULL, 10);
	PQclear(r);
	return SS_EOK;
}

int state_commit_version(PGconn *conn, uint64_t version, const digest_t *digest,
                         uint64_t entries, uint64_t added, uint64_t changed,
                         uint64_t removed, uint64_t expired, bool full,
                         int keep_versions, char *err, size_t errlen)
{
	char v[24], n[24], a[24], c[24], rm[24], ex[24], floor[24];
	char dhex[2 * SS_DIGEST_LEN + 3] = "\\x";
	digest_hex(digest, dhex + 2);
	snprintf(v, sizeof(v), "%" PRIu64, version);
	snprintf(n, sizeof(n), "%" PRIu64, entries);
	snprintf(a, sizeof(a), "%" PRIu64, added);
	snprintf(c, sizeof(c), "%" PRIu64, changed);
	snprintf(rm, sizeof(rm), "%" PRIu64, removed);
	snprintf(ex, sizeof(ex), "%" PRIu64, expired);
	uint64_t keep = keep_versions > 0 ? (uint64_t)keep_versions : 1;
	/* Changes at versions <= floor are dropped; children below it get a snapshot. */
	uint64_t fl = version > keep ? version - keep : 0;
	if (full)
		fl = version;
	snprintf(floor, sizeof(floor), "%" PRIu64, fl);

	const char *p1[] = { v, dhex, n, a, c, rm, ex, full ? "true" : "false" };
	int ret = db_execp(conn,
		"INSERT INTO catalog_versions (version, digest, entries, added, changed, removed, expired, full_pull) "
		"VALUES ($1, $2::bytea, $3, $4, $5, $6, $7, $8) "
		"ON CONFLICT (version) DO UPDATE SET digest = EXCLUDED.digest, entries = EXCLUDED.entries, "
		"added = EXCLUDED.added, changed = EXCLUDED.changed, removed = EXCLUDED.removed, "
		"expired = EXCLUDED.expired, full_pull = EXCLUDED.full_pull, created_at = now()",
		8, p1, err, errlen);
	if (ret != SS_EOK)
		return ret;
	const char *p2[] = { v, dhex, n, floor };
	ret = db_execp(conn,
		"UPDATE catalog_state SET version = $1, digest = $2::bytea, entries = $3, "
		"change_floor = GREATEST(change_floor, $4::bigint), updated_at = now()",
		4, p2, err, errlen);
	if (ret != SS_EOK)
		return ret;
	const char *p3[] = { floor };
	return db_execp(conn, "DELETE FROM changes WHERE version <= $1::bigint", 1, p3, err, errlen);
}

/* Add the entry hashes of column \a col of every row to \a d; rows with
 * NULL there are skipped when \a skip_null (a merge that replaced nothing). */
int state_sum_hash_column(PGresult *r, int col, bool skip_null, digest_t *d,
                          char *err, size_t errlen)
{
	for (int i = 0; i < PQntuples(r); i++) {
		uint8_t h[SS_DIGEST_LEN];
		if (skip_null && PQgetisnull(r, i, col))
			continue;
		if (bytea_digest(r, i, col, h) != SS_EOK) {
			snprintf(err, errlen, "stored entry hash is not %d bytes", SS_DIGEST_LEN);
			return SS_EDB;
		}
		digest_add(d, h);
	}
	return SS_EOK;
}

int state_sum_hashes(PGconn *conn, const char *sql, digest_t *d, char *err, size_t errlen)
{
	PGresult *r = NULL;
	int ret = db_query(conn, sql, 0, NULL, &r, err, errlen);
	if (ret != SS_EOK)
		return ret;
	ret = state_sum_hash_column(r, 0, false, d, err, errlen);
	PQclear(r);
	return ret;
}
