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

/* The stored LtHash state in column \a col into \a d. */
static int bytea_lthash(PGresult *r, int row, int col, digest_t *d)
{
	if (PQgetisnull(r, row, col))
		return SS_EDB;
	size_t n = 0;
	unsigned char *v = PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), &n);
	int ret = (v && n == SS_LTHASH_BYTES) ? SS_EOK : SS_EDB;
	if (ret == SS_EOK)
		digest_state_load(d, v);
	PQfreemem(v);
	return ret;
}

int state_read(PGconn *conn, bool lock, uint64_t *version, digest_t *digest,
               uint64_t *entries, char *err, size_t errlen)
{
	PGresult *r = NULL;
	int ret = db_query(conn, lock ? "SELECT version, digest, entries, lthash FROM catalog_state FOR UPDATE"
	                              : "SELECT version, digest, entries, lthash FROM catalog_state",
	                   0, NULL, &r, err, errlen);
	if (ret != SS_EOK)
		return ret;
	if (PQntuples(r) != 1 || bytea_digest(r, 0, 1, digest->b) != SS_EOK ||
	    bytea_lthash(r, 0, 3, digest) != SS_EOK) {
		snprintf(err, errlen, "catalog_state is damaged (or its set hash was never computed)");
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
	char dhex[2 * SS_DIGEST_LEN + 3] = "\\x", shex[2 * SS_DIGEST_LEN + 3] = "\\x";
	digest_hex(digest, dhex + 2);
	digest_set_hex(digest, shex + 2);
	uint8_t state[SS_LTHASH_BYTES];
	digest_state_bytes(digest, state);
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

	const char *p1[] = { v, dhex, n, a, c, rm, ex, full ? "true" : "false", shex };
	int ret = db_execp(conn,
		"INSERT INTO catalog_versions (version, digest, entries, added, changed, removed, expired, full_pull, "
		"set_digest) VALUES ($1, $2::bytea, $3, $4, $5, $6, $7, $8, $9::bytea) "
		"ON CONFLICT (version) DO UPDATE SET digest = EXCLUDED.digest, entries = EXCLUDED.entries, "
		"added = EXCLUDED.added, changed = EXCLUDED.changed, removed = EXCLUDED.removed, "
		"expired = EXCLUDED.expired, full_pull = EXCLUDED.full_pull, set_digest = EXCLUDED.set_digest, "
		"created_at = now()",
		9, p1, err, errlen);
	if (ret != SS_EOK)
		return ret;
	/* The 2 KiB state goes binary: no hex doubling, nothing to parse. */
	const char *p2[] = { v, dhex, n, floor, (const char *)state };
	int lens[] = { 0, 0, 0, 0, (int)sizeof(state) };
	int fmts[] = { 0, 0, 0, 0, 1 };
	PGresult *r = PQexecParams(conn,
		"UPDATE catalog_state SET version = $1, digest = $2::bytea, entries = $3, "
		"change_floor = GREATEST(change_floor, $4::bigint), lthash = $5, updated_at = now()",
		5, NULL, p2, lens, fmts, 0);
	ret = PQresultStatus(r) == PGRES_COMMAND_OK ? SS_EOK : SS_EDB;
	if (ret != SS_EOK)
		db_errcopy(PQresultErrorMessage(r), err, errlen);
	PQclear(r);
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
	digest_batch_t b;
	digest_batch_init(&b, d);
	for (int i = 0; i < PQntuples(r); i++) {
		uint8_t h[SS_DIGEST_LEN];
		if (skip_null && PQgetisnull(r, i, col))
			continue;
		if (bytea_digest(r, i, col, h) != SS_EOK) {
			snprintf(err, errlen, "stored entry hash is not %d bytes", SS_DIGEST_LEN);
			digest_batch_flush(&b);
			return SS_EDB;
		}
		digest_batch_add(&b, h);
	}
	digest_batch_flush(&b);
	return SS_EOK;
}

int state_sum_hashes(PGconn *conn, const char *sql, digest_t *d, char *err, size_t errlen)
{
	/* Row by row in binary: a whole catalog's hashes are never held at
	 * once, and SHAKE128 (not the transfer) is the cost, so they are
	 * expanded eight at a time. */
	if (!PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL, NULL, 1) || !PQsetSingleRowMode(conn)) {
		db_errcopy(PQerrorMessage(conn), err, errlen);
		return SS_EDB;
	}
	int ret = SS_EOK;
	PGresult *r;
	digest_batch_t b;
	digest_batch_init(&b, d);
	while ((r = PQgetResult(conn)) != NULL) {
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_SINGLE_TUPLE && ret == SS_EOK) {
			if (PQgetisnull(r, 0, 0) || PQgetlength(r, 0, 0) != SS_DIGEST_LEN) {
				snprintf(err, errlen, "stored entry hash is not %d bytes", SS_DIGEST_LEN);
				ret = SS_EDB;
			} else {
				digest_batch_add(&b, (const uint8_t *)PQgetvalue(r, 0, 0));
			}
		} else if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK && ret == SS_EOK) {
			db_errcopy(PQresultErrorMessage(r), err, errlen);
			ret = SS_EDB;
		}
		PQclear(r);
	}
	digest_batch_flush(&b);
	return ret;
}

int state_lthash_upgrade(PGconn *conn, bool top, int keep_versions, state_upgrade_t *u,
                         char *err, size_t errlen)
{
	memset(u, 0, sizeof(*u));
	PGresult *r = NULL;
	int ret = db_exec(conn, "BEGIN", err, errlen);
	if (ret != SS_EOK)
		return ret;
	/* The row lock makes a second daemon on the same database wait, then
	 * find the work done. */
	ret = db_query(conn, "SELECT version, digest, entries, lthash IS NULL FROM catalog_state FOR UPDATE",
	               0, NULL, &r, err, errlen);
	if (ret != SS_EOK)
		goto fail;
	if (PQntuples(r) != 1 || bytea_digest(r, 0, 1, u->stored.b) != SS_EOK) {
		snprintf(err, errlen, "catalog_state is damaged");
		ret = SS_EDB;
		goto fail;
	}
	if (PQgetvalue(r, 0, 3)[0] != 't') {
		PQclear(r);
		return db_exec(conn, "COMMIT", err, errlen);
	}
	u->version = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	uint64_t entries = strtoull(PQgetvalue(r, 0, 2), NULL, 10);
	PQclear(r);
	r = NULL;

	digest_t rows;
	digest_zero(&rows);
	if ((ret = state_sum_hashes(conn, "SELECT entry_hash FROM updates", &rows, err, errlen)) != SS_EOK)
		goto fail;
	u->computed = true;
	/* Rows that do not give the stored sum are damage for verify/repair to
	 * report; the set hash is the rows' and the stored sum is kept. */
	u->sum_mismatch = memcmp(rows.b, u->stored.b, SS_DIGEST_LEN) != 0;
	memcpy(rows.b, u->stored.b, SS_DIGEST_LEN);
	u->stored = rows;

	uint8_t state[SS_LTHASH_BYTES], set[SS_DIGEST_LEN];
	digest_state_bytes(&rows, state);
	digest_set_hash(&rows, set);
	char v[24];
	snprintf(v, sizeof(v), "%" PRIu64, u->version);
	const char *p[] = { (const char *)state, (const char *)set, v };
	int lens[] = { (int)sizeof(state), (int)sizeof(set), 0 };
	int fmts[] = { 1, 1, 0 };
	r = PQexecParams(conn, "WITH s AS (UPDATE catalog_state SET lthash = $1) "
	                 "UPDATE catalog_versions SET set_digest = $2 WHERE version = $3::bigint",
	                 3, NULL, p, lens, fmts, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		db_errcopy(PQresultErrorMessage(r), err, errlen);
		ret = SS_EDB;
		goto fail;
	}
	PQclear(r);
	r = NULL;
	/* The top records a no-change version: the manifests relays hold were
	 * signed without a set digest, and protocol-3 sites refuse those. */
	if (top && u->version > 0) {
		ret = state_commit_version(conn, u->version + 1, &rows, entries, 0, 0, 0, 0, false,
		                           keep_versions, err, errlen);
		if (ret != SS_EOK)
			goto fail;
		u->bumped = true;
	}
	return db_exec(conn, "COMMIT", err, errlen);
fail:
	PQclear(r);
	db_exec(conn, "ROLLBACK", NULL, 0);
	return ret;
}
