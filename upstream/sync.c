/* Upstream catalog to catalog version: fetch, stage, filter, diff, commit. */
#include "upstream/sync.h"

#include <inttypes.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "proto/sitesync.pb-c.h"
#include "replication/apply.h"
#include "replication/entry.h"
#include "replication/stream.h"
#include "server/errcode.h"
#include "storage/copy.h"
#include "storage/db.h"
#include "upstream/catalog.h"
#include "upstream/expire.h"
#include "upstream/fetch.h"
#include "upstream/remote.h"

#define COPY_FLUSH_BYTES (1u << 20)

const char *upstream_file_path(const char *url)
{
	if (strncmp(url, "file://", 7) != 0)
		return NULL;
	const char *p = url + 7;
	/* file://localhost/path and file:///path both name /path. */
	if (strncmp(p, "localhost/", 10) == 0)
		p += 9;
	return p;
}

void upstream_job_free(upstream_job_t *job)
{
	if (job == NULL)
		return;
	free(job->url);
	free(job->ca_file);
	free(job->proxy);
	free(job->state_dir);
	free(job->cert_file);
	free(job->key_file);
	free(job->import_id);
	free(job);
}

/*
 * The stage: one row per package in catalog order (seq; of duplicates
 * the first wins), its queryable columns, its packed content and where
 * the expired and source fields sit in it (upstream_expire_split), and its
 * entry hash at revision 1 as staged (hash1) and with the expired flag
 * turned over (hash1x): an added entry needs no hashing in SQL. Loaded
 * with binary COPY: no escaping, and content is not hex-encoded. Content
 * is compressed once, here, with the session's codec (lz4 where the server
 * has it, storage/db.c), and inserted into updates as it is.
 */
#define SQL_STAGE_TABLE \
	"CREATE TEMP TABLE ss_up (seq integer NOT NULL, update_id uuid NOT NULL, " \
	"title text NOT NULL, vendor text NOT NULL, products text[] NOT NULL, " \
	"classification text NOT NULL, languages text[] NOT NULL, severity text NOT NULL, " \
	"kb_article text NOT NULL, release_date text NOT NULL, expired boolean NOT NULL, " \
	"source text NOT NULL, supersedes text[] NOT NULL, content bytea NOT NULL, " \
	"cut integer NOT NULL, exp_len integer NOT NULL, src_len integer NOT NULL, " \
	"hash1 bytea NOT NULL, hash1x bytea NOT NULL) ON COMMIT DROP"
#define STAGE_COPY "COPY ss_up (seq, update_id, title, vendor, products, classification, " \
	"languages, severity, kb_article, release_date, expired, source, supersedes, content, " \
	"cut, exp_len, src_len, hash1, hash1x) FROM STDIN (FORMAT binary)"
#define STAGE_FIELDS 19

typedef struct {
	PGconn *conn;
	upstream_job_t *job;
	copybuf_t cb;
	uint8_t *packed;
	size_t packed_cap;
	uint64_t staged;
} stage_ctx_t;

static int stage_pack(stage_ctx_t *s, const Sitesync__UpdateContent *u, size_t *len)
{
	size_t n = sitesync__update_content__get_packed_size(u);
	if (n > s->packed_cap) {
		uint8_t *nb = realloc(s->packed, n ? n : 1);
		if (nb == NULL)
			return SS_ENOMEM;
		s->packed = nb;
		s->packed_cap = n;
	}
	sitesync__update_content__pack(u, s->packed);
	*len = n;
	return SS_EOK;
}

/*
 * digest_entry_hash() at revision 1 of content with its expired flag
 * turned over, spliced as UPSTREAM_CONTENT_SQL would (source unchanged).
 */
static int stage_hash_flipped(const uint8_t *content, size_t len, const uint32_t split[3],
                              bool expired, uint8_t out[SS_DIGEST_LEN])
{
	static const uint8_t rev1[4] = { 0, 0, 0, 1 };
	static const uint8_t exp_true[3] = { 0x88, 0x01, 0x01 };
	unsigned int n = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t rest = (size_t)split[0] + split[1];
	bool ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	          EVP_DigestUpdate(ctx, rev1, sizeof(rev1)) &&
	          EVP_DigestUpdate(ctx, content, split[0]) &&
	          (expired || EVP_DigestUpdate(ctx, exp_true, sizeof(exp_true))) &&
	          EVP_DigestUpdate(ctx, content + rest, len - rest) &&
	          EVP_DigestFinal_ex(ctx, out, &n) && n == SS_DIGEST_LEN;
	EVP_MD_CTX_free(ctx);
	return ok ? SS_EOK : SS_ENOMEM;
}

/* One stage row for \a u, whose packed form is \a content. */
static int stage_row(stage_ctx_t *s, const Sitesync__UpdateContent *u,
                     const uint8_t *content, size_t len)
{
	uint32_t split[3];
	if (!upstream_expire_split(content, len, split)) {
		/* Not in field order (another encoder): ours is. */
		int ret = stage_pack(s, u, &len);
		if (ret != SS_EOK)
			return ret;
		content = s->packed;
		if (!upstream_expire_split(content, len, split))
			return SS_EMALF;
	}
	uint8_t uuid[16], h1[SS_DIGEST_LEN], h1x[SS_DIGEST_LEN];
	entry_id_bytes(u->update_id, uuid);
	digest_entry_hash(1, content, len, h1);
	int ret = stage_hash_flipped(content, len, split, u->expired, h1x);
	if (ret != SS_EOK)
		return ret;
	copybuf_t *cb = &s->cb;
	copy_bin_row(cb, STAGE_FIELDS);
	copy_bin_int4(cb, (int32_t)s->staged);
	copy_bin_uuid(cb, uuid);
	entry_copy_fields(cb, u);
	copy_bin_bytes(cb, content, len);
	copy_bin_int4(cb, (int32_t)split[0]);
	copy_bin_int4(cb, (int32_t)split[1]);
	copy_bin_int4(cb, (int32_t)split[2]);
	copy_bin_bytes(cb, h1, sizeof(h1));
	copy_bin_bytes(cb, h1x, sizeof(h1x));
	s->staged++;
	return copy_flush(s->conn, cb, COPY_FLUSH_BYTES, s->job->err, sizeof(s->job->err));
}

static int stage_entry_cb(const Sitesync__UpdateContent *u, void *arg)
{
	stage_ctx_t *s = arg;
	Sitesync__UpdateContent imp;
	if (s->job->import_id != NULL) {
		/* An import takes one package; the rest only count as parsed. */
		atomic_fetch_add(&s->job->parsed, 1);
		if (strcasecmp(u->update_id, s->job->import_id) != 0)
			return SS_EOK;
		/* A shallow copy: only source differs, the strings stay the parser's. */
		imp = *u;
		imp.source = "imported";
		u = &imp;
	}
	if (!entry_id_valid(u->update_id)) {
		snprintf(s->job->err, sizeof(s->job->err), "package %.40s has an invalid id", u->update_id);
		return SS_EMALF;
	}
	size_t n = 0;
	int ret = stage_pack(s, u, &n);
	if (ret == SS_EOK)
		ret = stage_row(s, u, s->packed, n);
	if (ret == SS_EOK && s->job->import_id == NULL)
		atomic_fetch_add(&s->job->parsed, 1);
	return ret;
}

static int get_setting(PGconn *conn, const char *key, char **out, char *err, size_t errlen)
{
	PGresult *r = NULL;
	const char *p[] = { key };
	*out = NULL;
	int ret = db_query(conn, "SELECT value FROM settings WHERE key = $1", 1, p, &r, err, errlen);
	if (ret == SS_EOK && PQntuples(r) == 1)
		*out = strdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return ret;
}

static int set_setting(PGconn *conn, const char *key, const char *value, char *err, size_t errlen)
{
	const char *p[] = { key, value ? value : "" };
	return db_execp(conn, "INSERT INTO settings (key, value) VALUES ($1, $2) "
	                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", 2, p, err, errlen);
}

int upstream_setting_int(PGconn *conn, const char *key, long def, long *out,
                         char *err, size_t errlen)
{
	char *v = NULL;
	*out = def;
	int ret = get_setting(conn, key, &v, err, errlen);
	if (ret != SS_EOK || v == NULL)
		return ret;
	char *end = NULL;
	errno = 0;
	long n = strtol(v, &end, 10);
	/* A typo must not silently mean "expire everything at once". */
	if (errno != 0 || end == v || *end != '\0') {
		snprintf(err, errlen, "setting %s = '%.60s' is not an integer", key, v);
		ret = SS_ECONFIG;
	} else {
		*out = n;
	}
	free(v);
	return ret;
}

/*
 * The unchanged re-sync shortcut: what the last sync's result followed
 * from. The catalog's bytes (SHA-256 and size: a modification time can
 * lie), where they came from, the selection, the expiry setting and the
 * version the result became. The same fingerprint means the same result,
 * so nothing is parsed. A time-dependent expiry delay adds today's date;
 * a purge delay (hours matter) turns the shortcut off.
 */
typedef struct {
	char sha256[2 * 32 + 1];
	long long size;
	long months, days;
	bool usable;
} source_print_t;

static int hash_source(const char *path, source_print_t *sp, char *err, size_t errlen)
{
	int ret = SS_EOK;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t bufsz = 1u << 20;
	unsigned char *buf = malloc(bufsz);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(err, errlen, "cannot read upstream catalog %s: %s", path, strerror(errno));
		ret = SS_EFETCH;
		goto fail;
	}
	if (buf == NULL || ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		ret = SS_ENOMEM;
		goto fail;
	}
	sp->size = 0;
	size_t n;
	while ((n = fread(buf, 1, bufsz, f)) > 0) {
		if (!EVP_DigestUpdate(ctx, buf, n)) {
			ret = SS_ENOMEM;
			goto fail;
		}
		sp->size += (long long)n;
	}
	if (ferror(f)) {
		snprintf(err, errlen, "cannot read upstream catalog %s: %s", path, strerror(errno));
		ret = SS_EFETCH;
		goto fail;
	}
	if (!EVP_DigestFinal_ex(ctx, md, &mdlen) || mdlen != 32) {
		ret = SS_ENOMEM;
		goto fail;
	}
	for (unsigned int i = 0; i < mdlen; i++)
		snprintf(sp->sha256 + 2 * i, 3, "%02x", md[i]);
fail:
	if (f != NULL)
		fclose(f);
	EVP_MD_CTX_free(ctx);
	free(buf);
	return ret;
}

/* NULL (and no shortcut) when the result may change with time alone. */
static char *source_print_text(const source_print_t *sp, const upstream_job_t *job,
                               const char *selection, uint64_t version)
{
	if (!sp->usable)
		return NULL;
	char today[16] = "";
	if (sp->months > 0) {
		time_t now = time(NULL);
		struct tm tm;
		gmtime_r(&now, &tm);
		strftime(today, sizeof(today), " %Y-%m-%d", &tm);
	}
	char *out = NULL;
	if (asprintf(&out, "sha256=%s size=%lld version=%" PRIu64 " expire_months=%ld%s url=%s "
	             "selection=%s", sp->sha256, sp->size, version, sp->months, today, job->url,
	             selection) < 0)
		return NULL;
	return out;
}

static int source_print(PGconn *conn, upstream_job_t *job, const char *path, source_print_t *sp)
{
	memset(sp, 0, sizeof(*sp));
	int ret;
	if ((ret = upstream_setting_int(conn, "supersede_expire_months", 0, &sp->months, job->err,
	                                sizeof(job->err))) != SS_EOK ||
	    (ret = upstream_setting_int(conn, "purge_expired_days", 0, &sp->days, job->err,
	                                sizeof(job->err))) != SS_EOK ||
	    (ret = hash_source(path, sp, job->err, sizeof(job->err))) != SS_EOK)
		return ret;
	sp->usable = sp->days <= 0;
	return SS_EOK;
}

/* True when the catalog held was made from exactly these bytes. */
static int source_unchanged(PGconn *conn, upstream_job_t *job, const source_print_t *sp,
                            const char *selection, bool *same)
{
	*same = false;
	char *last = NULL, *now = source_print_text(sp, job, selection, job->held);
	int ret = get_setting(conn, "upstream_fingerprint", &last, job->err, sizeof(job->err));
	if (ret == SS_EOK && now != NULL && last != NULL)
		*same = strcmp(now, last) == 0;
	free(now);
	free(last);
	return ret;
}

/* Known WSUS classification ids get their names; others keep the id. */
static const char *const SQL_CATEGORIES =
	"INSERT INTO categories (kind, id, title) "
	"SELECT DISTINCT 'vendor', vendor, vendor FROM ss_up WHERE vendor <> '' "
	"UNION SELECT DISTINCT 'product', p, p FROM ss_up, unnest(products) p "
	"UNION SELECT DISTINCT 'classification', classification, CASE classification "
	"  WHEN '0fa1201d-4330-4fa8-8ae9-b877473b6441' THEN 'Security Updates' "
	"  WHEN 'e6cf1350-c01b-414d-a61f-263d14d133b4' THEN 'Critical Updates' "
	"  WHEN 'cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83' THEN 'Updates' "
	"  WHEN 'b54e7d24-7add-428f-8b75-90a396fa584f' THEN 'Feature Packs' "
	"  WHEN '28bc880e-0592-4cbf-8f95-c79b17911d5f' THEN 'Update Rollups' "
	"  WHEN '68c5b0a3-d1a6-4553-ae49-01d3a7827828' THEN 'Service Packs' "
	"  WHEN 'ebfc1fc5-71a4-4f7b-9aca-3b9a503104a0' THEN 'Drivers' "
	"  WHEN 'b4832bd8-e735-4761-8daf-37f882276dab' THEN 'Tools' "
	"  ELSE classification END FROM ss_up WHERE classification <> '' "
	"UNION SELECT DISTINCT 'language', l, l FROM ss_up, unnest(languages) l "
	"ON CONFLICT (kind, id) DO NOTHING";

/* A kind with nothing selected is not filtered; language-neutral entries
 * pass any language selection. Of an id listed twice the first stays. */
static const char *const SQL_SELECT =
	"CREATE TEMP TABLE ss_pick ON COMMIT DROP AS "
	"SELECT DISTINCT ON (update_id) s.update_id, s.seq, s.release_date, s.supersedes, "
	"  s.expired, s.source FROM ss_up s WHERE "
	"(NOT EXISTS (SELECT 1 FROM categories WHERE kind = 'product' AND selected) "
	"  OR s.products && ARRAY(SELECT id FROM categories WHERE kind = 'product' AND selected)) "
	"AND (NOT EXISTS (SELECT 1 FROM categories WHERE kind = 'classification' AND selected) "
	"  OR s.classification IN (SELECT id FROM categories WHERE kind = 'classification' AND selected)) "
	"AND (NOT EXISTS (SELECT 1 FROM categories WHERE kind = 'language' AND selected) "
	"  OR s.languages = '{}' "
	"  OR s.languages && ARRAY(SELECT id FROM categories WHERE kind = 'language' AND selected)) "
	"ORDER BY update_id, seq";

/* a = added, c = changed (content differs: revision + 1), r = removed.
 * Imported updates are never removed by an upstream sync: only rows whose
 * source is upstream can be. Content is compared only where a row is held. */
#define SQL_DIFF_UPSERTS \
	"CREATE TEMP TABLE ss_diff ON COMMIT DROP AS " \
	"SELECT s.update_id, 'a'::text AS kind, 1 AS revision FROM ss_sel s " \
	"WHERE NOT EXISTS (SELECT 1 FROM updates u WHERE u.update_id = s.update_id) " \
	"UNION ALL " \
	"SELECT s.update_id, 'c', u.revision + 1 FROM ss_sel s " \
	"JOIN updates u ON u.update_id = s.update_id JOIN ss_up p ON p.seq = s.seq " \
	"WHERE u.content <> (" UPSTREAM_CONTENT_SQL ") "
#define SQL_DIFF_INDEX "; CREATE UNIQUE INDEX ON ss_diff (update_id); ANALYZE ss_diff"
static const char *const SQL_DIFF_SYNC =
	SQL_DIFF_UPSERTS
	"UNION ALL "
	"SELECT u.update_id, 'r', 0 FROM updates u WHERE u.source = 'upstream' "
	"  AND NOT EXISTS (SELECT 1 FROM ss_sel s WHERE s.update_id = u.update_id)"
	SQL_DIFF_INDEX;
static const char *const SQL_DIFF_IMPORT = SQL_DIFF_UPSERTS SQL_DIFF_INDEX;

/* The entries of a snapshot pulled from a sitesync:// upstream, staged
 * like a catalog's packages (their content bytes are kept as received). */
static int stage_stream(stage_ctx_t *s, const char *path, catalog_stats_t *stats)
{
	upstream_job_t *job = s->job;
	stream_reader_t rd;
	int ret = stream_reader_open(&rd, path, job->max_frame ? job->max_frame : SS_FRAME_DEFAULT_LIMIT);
	if (ret != SS_EOK) {
		snprintf(job->err, sizeof(job->err), "cannot read the upstream snapshot: %s", ss_strerror(ret));
		return ret;
	}
	bool done = false;
	while (ret == SS_EOK && !done) {
		frame_t *f = NULL;
		ret = stream_reader_next(&rd, &f);
		if (ret != SS_EOK) {
			snprintf(job->err, sizeof(job->err), "upstream snapshot: %s",
			         ret == 1 ? "ends before PullDone" : ss_strerror(ret));
			ret = ret == 1 ? SS_ETRUNC : ret;
			break;
		}
		if (f->msg_case == SITESYNC__FRAME__MSG_BATCH) {
			Sitesync__Batch *b = f->batch;
			for (size_t i = 0; ret == SS_EOK && i < b->n_entries && i < b->n_ids; i++) {
				const ProtobufCBinaryData *c = &b->entries[i]->content;
				Sitesync__UpdateContent *u = sitesync__update_content__unpack(NULL, c->len, c->data);
				if (u == NULL || !entry_id_valid(b->ids[i]) || strcmp(u->update_id, b->ids[i]) != 0)
					ret = SS_EMALF;
				else
					ret = stage_row(s, u, c->data, c->len);
				sitesync__update_content__free_unpacked(u, NULL);
				if (ret != SS_EOK) {
					if (ret == SS_EMALF || job->err[0] == '\0')
						snprintf(job->err, sizeof(job->err), "upstream entry %.40s does not decode",
						         b->ids[i]);
					break;
				}
				stats->entries++;
				atomic_fetch_add(&job->parsed, 1);
			}
		} else if (f->msg_case == SITESYNC__FRAME__MSG_PULL_DONE) {
			done = true;
		}
		frame_free(f);
	}
	stats->bytes = rd.offset;
	stream_reader_close(&rd);
	return ret;
}

int upstream_stage(PGconn *conn, upstream_job_t *job, const char *path)
{
	stage_ctx_t s = { .conn = conn, .job = job };
	copy_init(&s.cb);
	int ret = db_exec(conn, SQL_STAGE_TABLE, job->err, sizeof(job->err));
	if (ret != SS_EOK)
		return ret;
	PGresult *r = PQexec(conn, STAGE_COPY);
	if (PQresultStatus(r) != PGRES_COPY_IN) {
		db_errcopy(PQresultErrorMessage(r), job->err, sizeof(job->err));
		PQclear(r);
		return SS_EDB;
	}
	PQclear(r);
	copy_bin_header(&s.cb);
	catalog_stats_t stats = { 0 };
	char perr[256] = "";
	atomic_store(&job->phase, 1);
	if (remote_is_url(job->url) && job->import_id == NULL)
		ret = stage_stream(&s, path, &stats);
	else
		ret = catalog_parse_file(path, stage_entry_cb, &s, &stats, perr, sizeof(perr));
	/* The whole catalog is refused: say so, then where the parser stopped. */
	if (ret != SS_EOK && job->err[0] == '\0')
		snprintf(job->err, sizeof(job->err), "cannot parse the catalog, nothing was changed: %s",
		         perr[0] ? perr : ss_strerror(ret));
	if (ret == SS_EOK)
		copy_bin_trailer(&s.cb);
	int fin = copy_finish(conn, &s.cb, ret == SS_EOK ? job->err : NULL,
	                      ret == SS_EOK ? sizeof(job->err) : 0);
	copy_clear(&s.cb);
	free(s.packed);
	job->entries_seen = stats.entries;
	if (ret == SS_EOK && fin == SS_EOK && job->import_id != NULL && s.staged == 0) {
		snprintf(job->err, sizeof(job->err), "update %s is not in the catalog (%" PRIu64
		         " packages read)", job->import_id, stats.entries);
		return SS_ENOENT;
	}
	return ret != SS_EOK ? ret : fin;
}

static int count_diff(PGconn *conn, upstream_job_t *job)
{
	PGresult *r = NULL;
	int ret = db_query(conn, "SELECT "
	                   "count(*) FILTER (WHERE kind = 'a'), count(*) FILTER (WHERE kind = 'c'), "
	                   "count(*) FILTER (WHERE kind = 'r') FROM ss_diff",
	                   0, NULL, &r, job->err, sizeof(job->err));
	if (ret != SS_EOK)
		return ret;
	job->added = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	job->changed = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
	job->removed = strtoull(PQgetvalue(r, 0, 2), NULL, 10);
	PQclear(r);
	return SS_EOK;
}

static int count_selected(PGconn *conn, upstream_job_t *job)
{
	PGresult *r = NULL;
	int ret = db_query(conn, "SELECT count(*) FROM ss_pick", 0, NULL, &r, job->err, sizeof(job->err));
	if (ret != SS_EOK)
		return ret;
	job->selected = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return SS_EOK;
}

static int commit_changes(PGconn *conn, upstream_job_t *job, const digest_t *held_digest,
                          uint64_t held_entries)
{
	digest_t minus, plus;
	digest_zero(&minus);
	digest_zero(&plus);
	char *err = job->err;
	size_t errlen = sizeof(job->err);
	int ret = apply_sum_hashes(conn, "SELECT u.entry_hash FROM updates u JOIN ss_diff d USING (update_id) "
	                     "WHERE d.kind IN ('c', 'r')", &minus, err, errlen);
	if (ret == SS_EOK)
		ret = db_exec(conn, "DELETE FROM updates u USING ss_diff d WHERE u.update_id = d.update_id "
		              "AND d.kind IN ('c', 'r')", err, errlen);
	/* entry_hash = sha256(be32(revision) || content), as digest_entry_hash();
	 * an added entry's was taken at staging. */
	if (ret == SS_EOK)
		ret = db_exec(conn, "INSERT INTO updates (" ENTRY_COPY_COLUMNS ") "
		              "SELECT s.update_id, d.revision, p.title, p.vendor, p.products, p.classification, "
		              "p.languages, p.severity, p.kb_article, p.release_date, s.expired, s.source, "
		              "p.supersedes, CASE WHEN d.revision = 1 AND s.source = p.source "
		              "  THEN CASE WHEN s.fix THEN p.hash1x ELSE p.hash1 END "
		              "  ELSE sha256(int4send(d.revision) || c.content) END, c.content "
		              "FROM ss_diff d JOIN ss_sel s USING (update_id) JOIN ss_up p ON p.seq = s.seq "
		              "CROSS JOIN LATERAL (SELECT " UPSTREAM_CONTENT_SQL " AS content) c "
		              "WHERE d.kind IN ('a', 'c')", err, errlen);
	if (ret == SS_EOK)
		ret = apply_sum_hashes(conn, "SELECT u.entry_hash FROM updates u JOIN ss_diff d USING (update_id) "
		                 "WHERE d.kind IN ('a', 'c')", &plus, err, errlen);
	if (ret != SS_EOK)
		return ret;
	char v[24];
	snprintf(v, sizeof(v), "%" PRIu64, job->version);
	const char *p[] = { v };
	ret = db_execp(conn, "INSERT INTO changes (version, update_id) SELECT $1::bigint, update_id FROM ss_diff",
	               1, p, err, errlen);
	if (ret != SS_EOK)
		return ret;
	job->digest = *held_digest;
	digest_sub(&job->digest, minus.b);
	digest_add(&job->digest, plus.b);
	job->entries = held_entries + job->added - job->removed;
	return apply_commit_version(conn, job->version, &job->digest, job->entries, job->added,
	                            job->changed, job->removed, job->expired, false,
	                            job->keep_versions, err, errlen);
}

int upstream_diff_commit(PGconn *conn, upstream_job_t *job, bool removals,
                         const digest_t *held_digest, uint64_t held_entries)
{
	int ret = db_exec(conn, removals ? SQL_DIFF_SYNC : SQL_DIFF_IMPORT, job->err, sizeof(job->err));
	if (ret == SS_EOK)
		ret = count_diff(conn, job);
	if (ret != SS_EOK)
		return ret;
	job->version = job->held;
	job->digest = *held_digest;
	job->entries = held_entries;
	if (job->added + job->changed + job->removed == 0) {
		job->unchanged = true;
		return SS_EOK;
	}
	job->version = job->held + 1;
	return commit_changes(conn, job, held_digest, held_entries);
}

int upstream_sync_work(PGconn *conn, void *arg)
{
	upstream_job_t *job = arg;
	char *etag = NULL, *last_mod = NULL, *last_url = NULL;
	char *sel_now = NULL, *sel_last = NULL;
	char download[1024];
	fetch_result_t fr;
	memset(&fr, 0, sizeof(fr));
	job->err[0] = '\0';
	int ret;

	/* The selection in force: a change must be applied even if upstream is not. */
	PGresult *sr = NULL;
	if ((ret = db_query(conn, "SELECT coalesce(string_agg(kind || ':' || id, ',' ORDER BY kind, id), '') "
	                    "FROM categories WHERE selected", 0, NULL, &sr, job->err, sizeof(job->err))) != SS_EOK)
		goto out;
	sel_now = strdup(PQgetvalue(sr, 0, 0));
	PQclear(sr);
	if (sel_now == NULL) {
		ret = SS_ENOMEM;
		goto out;
	}
	if ((ret = get_setting(conn, "upstream_selection", &sel_last, job->err, sizeof(job->err))) != SS_EOK)
		goto out;

	const char *path = upstream_file_path(job->url);
	if (remote_is_url(job->url)) {
		/* Another hierarchy's site: a full snapshot every time; the diff
		 * below keeps versions to real changes. */
		snprintf(download, sizeof(download), "%s/upstream.stream", job->state_dir);
		remote_opts_t ro = {
			.url = job->url, .ca_file = job->ca_file, .cert_file = job->cert_file,
			.key_file = job->key_file, .timeout = job->timeout,
			.heartbeat = job->heartbeat > 0 ? job->heartbeat : 10,
			.max_frame = job->max_frame ? job->max_frame : SS_FRAME_DEFAULT_LIMIT,
		};
		uint64_t upstream_version = 0;
		if (ro.ca_file == NULL || ro.cert_file == NULL || ro.key_file == NULL) {
			snprintf(job->err, sizeof(job->err), "a sitesync:// upstream needs [upstream] ca and a "
			         "certificate ([upstream] cert/key or [tls] cert/key)");
			ret = SS_ECONFIG;
			goto out;
		}
		ret = remote_fetch_snapshot(&ro, download, &upstream_version, &job->fetched_bytes,
		                            job->err, sizeof(job->err));
		if (ret != SS_EOK)
			goto out;
		path = download;
	} else if (path == NULL) {
		if ((ret = get_setting(conn, "upstream_etag", &etag, job->err, sizeof(job->err))) != SS_EOK ||
		    (ret = get_setting(conn, "upstream_last_modified", &last_mod, job->err, sizeof(job->err))) != SS_EOK ||
		    (ret = get_setting(conn, "upstream_url", &last_url, job->err, sizeof(job->err))) != SS_EOK)
			goto out;
		/* A new URL, or --full, must not be answered by "not modified". */
		bool cache = !job->full && last_url && strcmp(last_url, job->url) == 0 &&
		             sel_last && strcmp(sel_last, sel_now) == 0;
		snprintf(download, sizeof(download), "%s/upstream.download", job->state_dir);
		fetch_opts_t fo = {
			.url = job->url, .ca_file = job->ca_file, .proxy = job->proxy,
			.connect_timeout = job->connect_timeout, .timeout = job->timeout,
			.etag = cache ? etag : NULL, .last_modified = cache ? last_mod : NULL,
			.ignore_cache = !cache, .retries = 3,
		};
		ret = fetch_to_file(&fo, download, &fr, job->err, sizeof(job->err));
		if (ret != SS_EOK)
			goto out;
		job->fetched_bytes = fr.bytes;
		if (fr.not_modified) {
			job->not_modified = true;
			job->unchanged = true;
			goto out;
		}
		path = download;
	} else if (access(path, R_OK) != 0) {
		snprintf(job->err, sizeof(job->err), "cannot read upstream catalog %s: %s", path, strerror(errno));
		ret = SS_EFETCH;
		goto out;
	}

	source_print_t sp;
	if ((ret = source_print(conn, job, path, &sp)) != SS_EOK)
		goto out;
	digest_t held_digest;
	uint64_t held_entries = 0;
	if ((ret = db_exec(conn, "BEGIN", job->err, sizeof(job->err))) != SS_EOK)
		goto out;
	if ((ret = apply_read_state(conn, true, &job->held, &held_digest, &held_entries,
	                            job->err, sizeof(job->err))) != SS_EOK)
		goto rollback;
	bool same = false;
	if (!job->full && (ret = source_unchanged(conn, job, &sp, sel_now, &same)) != SS_EOK)
		goto rollback;
	if (same) {
		job->not_modified = job->unchanged = job->same_bytes = true;
		job->version = job->held;
		job->digest = held_digest;
		job->entries = held_entries;
		ret = db_exec(conn, "ROLLBACK", job->err, sizeof(job->err));
		goto out;
	}
	if ((ret = upstream_stage(conn, job, path)) != SS_EOK)
		goto rollback;
	atomic_store(&job->phase, 2);
	/* Selected count before expiry maintenance may purge some. */
	if ((ret = db_exec(conn, SQL_CATEGORIES, job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = db_exec(conn, SQL_SELECT, job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = count_selected(conn, job)) != SS_EOK ||
	    (ret = upstream_expire_settle(conn, job)) != SS_EOK ||
	    (ret = upstream_diff_commit(conn, job, true, &held_digest, held_entries)) != SS_EOK)
		goto rollback;
	if (path != upstream_file_path(job->url) && !remote_is_url(job->url)) {
		if ((ret = set_setting(conn, "upstream_etag", fr.etag, job->err, sizeof(job->err))) != SS_EOK ||
		    (ret = set_setting(conn, "upstream_last_modified", fr.last_modified, job->err, sizeof(job->err))) != SS_EOK ||
		    (ret = set_setting(conn, "upstream_url", job->url, job->err, sizeof(job->err))) != SS_EOK)
			goto rollback;
	}
	char *print = source_print_text(&sp, job, sel_now, job->version);
	ret = print != NULL ? set_setting(conn, "upstream_fingerprint", print, job->err, sizeof(job->err))
	      : db_exec(conn, "DELETE FROM settings WHERE key = 'upstream_fingerprint'",
	                job->err, sizeof(job->err));
	free(print);
	if (ret != SS_EOK)
		goto rollback;
	char now[24];
	snprintf(now, sizeof(now), "%lld", (long long)time(NULL));
	if ((ret = set_setting(conn, "last_upstream_sync", now, job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = set_setting(conn, "upstream_selection", sel_now, job->err, sizeof(job->err))) != SS_EOK)
		goto rollback;
	ret = db_exec(conn, "COMMIT", job->err, sizeof(job->err));
	goto out;
rollback:
	db_exec(conn, "ROLLBACK", NULL, 0);
out:
	if (ret != SS_EOK && job->err[0] == '\0')
		snprintf(job->err, sizeof(job->err), "%s", ss_strerror(ret));
	fetch_result_clear(&fr);
	free(etag);
	free(last_mod);
	free(last_url);
	free(sel_now);
	free(sel_last);
	return ret;
}
