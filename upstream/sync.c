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

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <openssl/evp.h>

#include "proto/sitesync.pb-c.h"
#include "catalog/state.h"
#include "catalog/txn.h"
#include "catalog/entry.h"
#include "catalog/stream.h"
#include "common/errcode.h"
#include "storage/copy.h"
#include "storage/db.h"
#include "upstream/catalog.h"
#include "upstream/expire.h"
#include "upstream/fetch.h"
#include "upstream/first.h"
#include "upstream/removal.h"
#include "upstream/sources.h"
#include "upstream/stage.h"
#include "upstream/remote.h"
#include "upstream/wsus_sync.h"


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
	wsus_result_clear(&job->wsus_res);
	for (size_t i = 0; i < job->n_sources; i++) {
		free(job->sources[i].name);
		free(job->sources[i].url);
		free(job->sources[i].ca_file);
		free(job->sources[i].proxy);
		free(job->sources[i].products);
		free(job->sources[i].classifications);
		free(job->sources[i].languages);
	}
	free(job);
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
 * pass any language selection. A [source] that lists a kind itself
 * (ss_srcs, sources.h) selects its own packages of that kind by that list
 * instead. Of an id listed twice the first selected stays. */
static const char *const SQL_SELECT =
	"CREATE TEMP TABLE ss_pick ON COMMIT DROP AS "
	"SELECT DISTINCT ON (update_id) s.update_id, s.seq, s.release_date, s.supersedes, "
	"  s.expired, s.source FROM ss_up s "
	"LEFT JOIN ss_srcs r ON s.seq >= r.lo AND s.seq < r.hi WHERE "
	"(CASE WHEN r.products IS NOT NULL THEN s.products && r.products ELSE "
	"  (NOT EXISTS (SELECT 1 FROM categories WHERE kind = 'product' AND selected) "
	"  OR s.products && ARRAY(SELECT id FROM categories WHERE kind = 'product' AND selected)) END) "
	"AND (CASE WHEN r.classifications IS NOT NULL "
	"  THEN lower(s.classification) = ANY (r.classifications) ELSE "
	"  (NOT EXISTS (SELECT 1 FROM categories WHERE kind = 'classification' AND selected) "
	"  OR s.classification IN (SELECT id FROM categories WHERE kind = 'classification' AND selected)) END) "
	"AND (CASE WHEN r.languages IS NOT NULL "
	"  THEN s.languages = '{}' OR s.languages && r.languages ELSE "
	"  (NOT EXISTS (SELECT 1 FROM categories WHERE kind = 'language' AND selected) "
	"  OR s.languages = '{}' "
	"  OR s.languages && ARRAY(SELECT id FROM categories WHERE kind = 'language' AND selected)) END) "
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


static int count_diff(PGconn *conn, upstream_job_t *job)
{
	uint64_t v[3];
	int ret = db_query_u64(conn, "SELECT "
	                       "count(*) FILTER (WHERE kind = 'a'), count(*) FILTER (WHERE kind = 'c'), "
	                       "count(*) FILTER (WHERE kind = 'r') FROM ss_diff",
	                       0, NULL, v, 3, job->err, sizeof(job->err));
	if (ret == SS_EOK) {
		job->added = v[0];
		job->changed = v[1];
		job->removed = v[2];
	}
	return ret;
}

static int commit_changes(PGconn *conn, upstream_job_t *job, const digest_t *held_digest,
                          uint64_t held_entries)
{
	digest_t minus, plus;
	digest_zero(&minus);
	digest_zero(&plus);
	char *err = job->err;
	size_t errlen = sizeof(job->err);
	int ret = state_sum_hashes(conn, "SELECT u.entry_hash FROM updates u JOIN ss_diff d USING (update_id) "
	                           "WHERE d.kind IN ('c', 'r')", &minus, err, errlen);
	if (ret == SS_EOK)
		ret = db_exec(conn, "DELETE FROM updates u USING ss_diff d WHERE u.update_id = d.update_id "
		              "AND d.kind IN ('c', 'r')", err, errlen);
	/* entry_hash = sha256(be32(revision) || content), as digest_entry_hash();
	 * an added entry whose bytes stay as staged has it from staging. */
	if (ret == SS_EOK)
		ret = db_exec(conn, "INSERT INTO updates (" ENTRY_COPY_COLUMNS ") "
		              "SELECT s.update_id, d.revision, p.title, p.vendor, p.products, p.classification, "
		              "p.languages, p.severity, p.kb_article, p.release_date, s.expired, s.source, "
		              "p.supersedes, CASE WHEN d.revision = 1 AND NOT s.fix THEN p.hash1 "
		              "  ELSE sha256(int4send(d.revision) || c.content) END, c.content "
		              "FROM ss_diff d JOIN ss_sel s USING (update_id) JOIN ss_up p ON p.seq = s.seq "
		              "CROSS JOIN LATERAL (SELECT " UPSTREAM_CONTENT_SQL " AS content) c "
		              "WHERE d.kind IN ('a', 'c')", err, errlen);
	if (ret == SS_EOK)
		ret = state_sum_hashes(conn, "SELECT u.entry_hash FROM updates u JOIN ss_diff d USING (update_id) "
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
	digest_merge(&job->digest, &minus, true);
	digest_merge(&job->digest, &plus, false);
	job->entries = held_entries + job->added - job->removed;
	return state_commit_version(conn, job->version, &job->digest, job->entries, job->added,
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
	if (removals && (ret = upstream_removal_check(job, held_entries)) != SS_EOK)
		return ret;
	job->version = job->held + 1;
	return commit_changes(conn, job, held_digest, held_entries);
}

int upstream_sync_work(PGconn *conn, void *arg)
{
	upstream_job_t *job = arg;
	char *etag = NULL, *last_mod = NULL, *last_url = NULL;
	char *sel_now = NULL, *sel_last = NULL;
	char download[1024];
	first_sync_t first;
	memset(&first, 0, sizeof(first));
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
	} else if (job->wsus) {
		/* Microsoft Update / WSUS: the protocol's own deltas stand in for
		 * conditional GET; the entries come as a record file. */
		snprintf(download, sizeof(download), "%s/upstream.wsus", job->state_dir);
		if ((ret = wsus_sync_fetch(conn, job, sel_now, download)) != SS_EOK)
			goto out;
		path = download;
	} else if (path == NULL) {
		if ((ret = get_setting(conn, "upstream_etag", &etag, job->err, sizeof(job->err))) != SS_EOK ||
		    (ret = get_setting(conn, "upstream_last_modified", &last_mod, job->err, sizeof(job->err))) != SS_EOK ||
		    (ret = get_setting(conn, "upstream_url", &last_url, job->err, sizeof(job->err))) != SS_EOK)
			goto out;
		/* A new URL, or --full, must not be answered by "not modified". */
		bool cache = !job->full && last_url && strcmp(last_url, job->url) == 0 &&
		             sel_last && strcmp(sel_last, sel_now) == 0 && job->n_sources == 0;
		snprintf(download, sizeof(download), "%s/upstream.download", job->state_dir);
		fetch_opts_t fo = {
			.url = job->url, .ca_file = job->ca_file, .proxy = job->proxy,
			.connect_timeout = job->connect_timeout, .timeout = job->timeout,
			.etag = cache ? etag : NULL, .last_modified = cache ? last_mod : NULL,
			.ignore_cache = !cache, .retries = 3, .max_bytes = job->max_bytes,
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

	/* Further sources: each catalog fetched whole (no 304), before the
	 * transaction; any failure fails the sync, naming the source. */
	for (size_t i = 0; i < job->n_sources; i++) {
		upstream_source_t *src = &job->sources[i];
		const char *fp = upstream_file_path(src->url);
		if (fp != NULL) {
			if (access(fp, R_OK) != 0) {
				snprintf(job->err, sizeof(job->err), "source %s: cannot read %s: %s", src->name,
				         fp, strerror(errno));
				ret = SS_EFETCH;
				goto out;
			}
			snprintf(src->path, sizeof(src->path), "%s", fp);
			continue;
		}
		snprintf(src->path, sizeof(src->path), "%s/source.%s.download", job->state_dir, src->name);
		fetch_opts_t so = {
			.url = src->url, .ca_file = src->ca_file, .proxy = src->proxy,
			.connect_timeout = job->connect_timeout, .timeout = job->timeout,
			.ignore_cache = true, .retries = 3, .max_bytes = job->max_bytes,
		};
		fetch_result_t sfr;
		memset(&sfr, 0, sizeof(sfr));
		char ferr[200] = "";
		ret = fetch_to_file(&so, src->path, &sfr, ferr, sizeof(ferr));
		src->bytes = sfr.bytes;
		fetch_result_clear(&sfr);
		if (ret != SS_EOK) {
			snprintf(job->err, sizeof(job->err), "source %s: %s", src->name, ferr);
			goto out;
		}
	}
	source_print_t sp;
	if ((ret = source_print(conn, job, path, &sp)) != SS_EOK)
		goto out;
	/* The fingerprint covers the url's catalog only: with further
	 * sources there is no "same bytes" shortcut. */
	if (job->n_sources > 0)
		sp.usable = false;
	digest_t held_digest;
	uint64_t held_entries = 0;
again:
	if ((ret = db_exec(conn, "BEGIN", job->err, sizeof(job->err))) != SS_EOK)
		goto out;
	if ((ret = state_read(conn, true, &job->held, &held_digest, &held_entries,
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
	bool direct = false;
	if ((ret = first_sync_begin(&first, conn, job, sp.months, &direct)) != SS_EOK ||
	    (ret = upstream_stage_catalog(conn, job, path, direct ? &first : NULL)) != SS_EOK)
		goto rollback;
	atomic_store(&job->phase, 2);
	if (job->wsus && (ret = wsus_sync_categories(conn, job)) != SS_EOK)
		goto rollback;
	if ((ret = sources_stage_table(conn, job)) != SS_EOK)
		goto rollback;
	/* Selected count before expiry maintenance may purge some. */
	if ((ret = db_exec(conn, SQL_CATEGORIES, job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = db_exec(conn, SQL_SELECT, job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = db_query_u64(conn, "SELECT count(*) FROM ss_pick", 0, NULL, &job->selected, 1,
	                        job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = upstream_expire_settle(conn, job)) != SS_EOK)
		goto rollback;
	ret = direct ? first_sync_commit(conn, job, &first)
	      : upstream_diff_commit(conn, job, true, &held_digest, held_entries);
	if (ret == SS_EAGAIN && direct) {
		/* Not what the SQL selection says: never keep it, stage instead. */
		snprintf(job->first_refused, sizeof(job->first_refused), "%s", job->err);
		job->err[0] = '\0';
		db_exec(conn, "ROLLBACK", NULL, 0);
		first_sync_end(&first);
		job->staged_only = true;
		atomic_store(&job->parsed, 0);
		goto again;
	}
	if (ret != SS_EOK)
		goto rollback;
	job->first_direct = direct;
	if ((ret = sources_settle(conn, job)) != SS_EOK)
		goto rollback;
	if (job->wsus && (ret = wsus_sync_remember(conn, job, sel_now)) != SS_EOK)
		goto rollback;
	if (path != upstream_file_path(job->url) && !remote_is_url(job->url) && !job->wsus) {
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
rollback: /* also reached with ret == SS_EOK, to commit */
	ret = txn_end(conn, ret, job->err, sizeof(job->err));
out:
	ss_err_default(ret, job->err, sizeof(job->err));
	first_sync_end(&first);
#ifdef __GLIBC__
	/* The parse's batches, window and id sets were freed, partly in the
	 * writer thread's arena: give them back, or the top keeps the peak of
	 * its largest catalog while it serves children. */
	malloc_trim(0);
#endif
	fetch_result_clear(&fr);
	free(etag);
	free(last_mod);
	free(last_url);
	free(sel_now);
	free(sel_last);
	return ret;
}
