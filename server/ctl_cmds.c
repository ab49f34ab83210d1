/* Control commands: status, sync, children, catalog queries, verify. */
#include "server/ctl_cmds.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "replication/apply.h"
#include "replication/child_link.h"
#include "catalog/digest.h"
#include "replication/parent_link.h"
#include "replication/status.h"
#include "server/ctl.h"
#include "server/ctl_bundle.h"
#include "server/ctl_settings.h"
#include "server/ctl_upstream.h"
#include "server/daemon.h"
#include "server/http.h"
#include "common/errcode.h"
#include "common/log.h"
#include "server/topsync.h"
#include "storage/db.h"

/* A command answered from the database: work on a worker, reply on the loop. */
typedef struct ctl_job ctl_job_t;
typedef int (*ctl_job_fn)(PGconn *conn, ctl_job_t *j);
typedef void (*ctl_job_after_fn)(ctl_job_t *j);

struct ctl_job {
	daemon_t *d;
	ctl_req_t *req;
	json_t *args;
	json_t *result;
	ctl_job_fn fn;
	ctl_job_after_fn after;    /* loop-side follow-up, may amend result */
	char err[256];
	int code;
};

static int ctl_job_work(PGconn *conn, void *arg)
{
	ctl_job_t *j = arg;
	return j->fn(conn, j);
}

static void ctl_job_done(int ret, void *arg)
{
	ctl_job_t *j = arg;
	if (ret == SS_EOK && j->after)
		j->after(j);
	if (ret == SS_EOK) {
		ctl_reply(j->req, j->result);
		j->result = NULL;
	} else {
		ctl_reply_error(j->req, ret, "%s", j->err[0] ? j->err : ss_strerror(ret));
	}
	json_decref(j->result);
	json_decref(j->args);
	free(j);
}

static void ctl_job_submit(daemon_t *d, ctl_req_t *req, const json_t *args, ctl_job_fn fn,
                           ctl_job_after_fn after)
{
	ctl_job_t *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		ctl_reply_error(req, SS_ENOMEM, "out of memory");
		return;
	}
	j->d = d;
	j->req = req;
	/* A deep copy: the worker must not share refcounts with the loop. */
	j->args = args ? json_deep_copy(args) : json_object();
	j->fn = fn;
	j->after = after;
	if (db_submit(d->site.db, DB_QUICK, ctl_job_work, ctl_job_done, j) != SS_EOK) {
		json_decref(j->args);
		free(j);
		ctl_reply_error(req, SS_ENOMEM, "out of memory");
	}
}

static const char *arg_str(const json_t *args, const char *key)
{
	const json_t *v = json_object_get(args, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Result rows as JSON objects; columns ending in "_json" hold JSON text. */
static json_t *rows_json(PGresult *r)
{
	json_t *arr = json_array();
	int nf = PQnfields(r);
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *o = json_object();
		for (int f = 0; f < nf; f++) {
			const char *name = PQfname(r, f);
			json_t *v;
			if (PQgetisnull(r, i, f)) {
				v = json_null();
			} else {
				const char *txt = PQgetvalue(r, i, f);
				Oid t = PQftype(r, f);
				if (t == 20 || t == 21 || t == 23)          /* int8, int2, int4 */
					v = json_integer(strtoll(txt, NULL, 10));
				else if (t == 16)                           /* bool */
					v = json_boolean(txt[0] == 't');
				else if (t == 114 || t == 3802)             /* json, jsonb */
					v = json_loads(txt, JSON_DECODE_ANY, NULL);
				else
					v = json_string(txt);
			}
			json_object_set_new(o, name, v ? v : json_null());
		}
		json_array_append_new(arr, o);
	}
	return arr;
}

/* ---- status, sync ---------------------------------------------------- */

json_t *ctl_cmds_status_json(daemon_t *d)
{
	json_t *o = status_json(&d->site);
	/* The daemon shell's own fact: when [schedule] cron runs the next sync. */
	json_object_set_new(o, "next_upstream_sync",
	                    d->next_run ? status_time_json(d->next_run) : json_null());
	return o;
}

static void cmd_status(ctl_req_t *req, const json_t *args, void *arg)
{
	ctl_reply(req, ctl_cmds_status_json(arg));
}

/* `sitesync sync` at a child: a pull from the parent now. */
static void cmd_sync_child(ctl_req_t *req, daemon_t *d, bool full)
{
	if (d->site.parent == NULL) {
		ctl_reply_error(req, SS_ENOTTOP, "%s is a disconnected site: it takes its catalog from "
		                "bundles (sitesync import)", d->site.conf->site_code);
		return;
	}
	if (!d->site.active) {
		ctl_reply_error(req, SS_ELOCKED, "this daemon is a standby for site %s: the active "
		                "writer pulls", d->site.conf->site_code);
		return;
	}
	const char *parent = parent_link_site(d->site.parent);
	int ret = parent_link_pull_now(d->site.parent, full);
	if (ret == SS_EBUSY) {
		ctl_reply_error(req, ret, "a pull or an import is already running at %s",
		                d->site.conf->site_code);
		return;
	}
	if (ret == SS_EAGAIN) {
		ctl_reply_error(req, ret, "not connected to the parent %s: %s pulls as soon as the "
		                "link is up", parent[0] ? parent : d->site.conf->parent_address,
		                d->site.conf->site_code);
		return;
	}
	json_t *o = json_object();
	json_object_set_new(o, "started", json_boolean(ret == SS_EOK));
	json_object_set_new(o, "pull", json_true());
	json_object_set_new(o, "parent", json_string(parent));
	json_object_set_new(o, "up_to_date", json_boolean(ret == SS_EEXIST));
	json_object_set_new(o, "full", json_boolean(full));
	json_object_set_new(o, "catalog_version", json_integer((json_int_t)d->site.version));
	json_object_set_new(o, "parent_version",
	                    json_integer((json_int_t)parent_link_version(d->site.parent)));
	ctl_reply(req, o);
}

static void cmd_sync(ctl_req_t *req, const json_t *args, void *arg)
{
	daemon_t *d = arg;
	bool full = json_is_true(json_object_get(args, "full"));
	bool allow = json_is_true(json_object_get(args, "allow_removal"));
	if (!conf_is_top(d->site.conf)) {
		cmd_sync_child(req, d, full);
		return;
	}
	int ret = topsync_start_confirmed(d, full, allow, "manual");
	if (ret == SS_ENOTTOP) {
		ctl_reply_error(req, ret, "%s is not the top site: syncs start at the top and flow down", d->site.conf->site_code);
		return;
	}
	if (ret == SS_ECONFIG) {
		ctl_reply_error(req, ret, "no [upstream] url is configured at %s", d->site.conf->site_code);
		return;
	}
	if (ret == SS_ELOCKED) {
		ctl_reply_error(req, ret, "this daemon is a standby for site %s: the active writer runs syncs",
		                d->site.conf->site_code);
		return;
	}
	if (ret != SS_EOK) {
		ctl_reply_error(req, ret, "cannot start a sync: %s", ss_strerror(ret));
		return;
	}
	json_t *o = json_object();
	json_object_set_new(o, "started", json_true());
	json_object_set_new(o, "full", json_boolean(full));
	json_object_set_new(o, "catalog_version", json_integer((json_int_t)d->site.version));
	ctl_reply(req, o);
}

/* ---- children -------------------------------------------------------- */

int ctl_cmds_load_children(daemon_t *d, void *pgconn, char *err, size_t errlen)
{
	PGresult *r = NULL;
	int ret = db_query(pgconn, "SELECT site FROM children ORDER BY site", 0, NULL, &r, err, errlen);
	if (ret != SS_EOK)
		return ret;
	int n = PQntuples(r);
	char (*sites)[4] = calloc((size_t)n + 1, sizeof(*sites));
	if (sites == NULL) {
		PQclear(r);
		return SS_ENOMEM;
	}
	for (int i = 0; i < n; i++)
		snprintf(sites[i], 4, "%s", PQgetvalue(r, i, 0));
	PQclear(r);
	ret = site_set_approved(&d->site, sites, (size_t)n);
	free(sites);
	return ret;
}

static int child_list_work(PGconn *conn, ctl_job_t *j)
{
	PGresult *r = NULL;
	int ret = db_query(conn, "SELECT site, to_char(approved_at AT TIME ZONE 'UTC', "
	                   "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS approved_at FROM children ORDER BY site",
	                   0, NULL, &r, j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	j->result = json_object();
	json_object_set_new(j->result, "children", rows_json(r));
	PQclear(r);
	return SS_EOK;
}

static void child_list_after(ctl_job_t *j)
{
	daemon_t *d = j->d;
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(j->result, "children"), i, c) {
		const char *site = json_string_value(json_object_get(c, "site"));
		bool up = child_link_connected(&d->site, site);
		json_object_set_new(c, "connected", json_boolean(up));
		json_object_set_new(c, "link", json_string(up ? "active" : "down"));
		status_row_t *row = status_table_find(d->site.subtree, site);
		json_object_set_new(c, "catalog_version",
		                    row ? json_integer((json_int_t)row->row->catalog_version) : json_null());
	}
	/* Sites that tried to connect but are not approved. */
	json_object_set_new(j->result, "pending", site_pending_json(&d->site));
}

static int child_add_work(PGconn *conn, ctl_job_t *j)
{
	const char *site = arg_str(j->args, "site");
	const char *p[] = { site };
	PGresult *r = NULL;
	int ret = db_query(conn, "INSERT INTO children (site) VALUES ($1) ON CONFLICT DO NOTHING RETURNING site",
	                   1, p, &r, j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	j->result = json_object();
	json_object_set_new(j->result, "site", json_string(site));
	json_object_set_new(j->result, "added", json_boolean(PQntuples(r) == 1));
	PQclear(r);
	return SS_EOK;
}

static int child_remove_work(PGconn *conn, ctl_job_t *j)
{
	const char *site = arg_str(j->args, "site");
	const char *p[] = { site };
	PGresult *r = NULL;
	int ret = db_query(conn, "DELETE FROM children WHERE site = $1 RETURNING site", 1, p, &r,
	                   j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	bool removed = PQntuples(r) == 1;
	PQclear(r);
	if (!removed) {
		snprintf(j->err, sizeof(j->err), "%s is not an approved child", site);
		return SS_ENOENT;
	}
	j->result = json_object();
	json_object_set_new(j->result, "site", json_string(site));
	json_object_set_new(j->result, "removed", json_true());
	return SS_EOK;
}

/* The in-memory approved list changes only here, on the loop. */
static void child_changed_after(ctl_job_t *j)
{
	daemon_t *d = j->d;
	const char *site = json_string_value(json_object_get(j->result, "site"));
	if (json_object_get(j->result, "added") && !site_child_approved(&d->site, site)) {
		char (*more)[4] = calloc(d->site.n_approved + 1, sizeof(*more));
		if (more) {
			if (d->site.n_approved)
				memcpy(more, d->site.approved, d->site.n_approved * sizeof(*more));
			snprintf(more[d->site.n_approved], 4, "%s", site);
			site_set_approved(&d->site, more, d->site.n_approved + 1);
			free(more);
		}
	}
	if (json_is_true(json_object_get(j->result, "removed"))) {
		/* Remove from the in-memory list and close its session. */
		size_t n = 0;
		char (*keep)[4] = calloc(d->site.n_approved + 1, sizeof(*keep));
		if (keep) {
			for (size_t i = 0; i < d->site.n_approved; i++)
				if (strcmp(d->site.approved[i], site) != 0)
					memcpy(keep[n++], d->site.approved[i], 4);
			site_set_approved(&d->site, keep, n);
			free(keep);
		}
		child_link_drop(&d->site, site, "site is no longer an approved child");
		status_forget_child(&d->site, site);
		site_message(&d->site, SS_MSG_CHILD_LOST, "info", "Child site %s removed by the operator", site);
	} else if (json_is_true(json_object_get(j->result, "added"))) {
		site_message(&j->d->site, SS_MSG_CHILD_CONNECTED, "info", "Child site %s approved by the operator", site);
	}
	site_status_changed(&j->d->site);
}

static bool check_site_arg(ctl_req_t *req, const json_t *args)
{
	const char *site = arg_str(args, "site");
	if (!conf_site_code_valid(site)) {
		ctl_reply_error(req, SS_EINVAL, "'%s' is not a site code (3 upper-case letters or digits)",
		                site ? site : "");
		return false;
	}
	return true;
}

static void cmd_child_add(ctl_req_t *req, const json_t *args, void *arg)
{
	daemon_t *d = arg;
	if (!check_site_arg(req, args))
		return;
	if (strcmp(arg_str(args, "site"), d->site.conf->site_code) == 0) {
		ctl_reply_error(req, SS_EINVAL, "a site cannot be its own child");
		return;
	}
	ctl_job_submit(d, req, args, child_add_work, child_changed_after);
}

static void cmd_child_remove(ctl_req_t *req, const json_t *args, void *arg)
{
	if (check_site_arg(req, args))
		ctl_job_submit(arg, req, args, child_remove_work, child_changed_after);
}

static void cmd_child_list(ctl_req_t *req, const json_t *args, void *arg)
{
	ctl_job_submit(arg, req, args, child_list_work, child_list_after);
}

/* ---- verify ---------------------------------------------------------- */

static int verify_work(PGconn *conn, ctl_job_t *j)
{
	/* Recompute the digest from every stored row, not from the running sum. */
	PGresult *r = NULL;
	int ret = db_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", j->err, sizeof(j->err));
	if (ret == SS_EOK)
		ret = db_query(conn, "SELECT version, encode(digest, 'hex'), entries, "
		               "encode(sha256(convert_to('sitesync set digest v1', 'UTF8') || lthash), 'hex'), "
		               "(SELECT count(*) FROM updates) FROM catalog_state",
		               0, NULL, &r, j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	j->result = json_object();
	json_object_set_new(j->result, "version", json_integer(strtoll(PQgetvalue(r, 0, 0), NULL, 10)));
	json_object_set_new(j->result, "digest", json_string(PQgetvalue(r, 0, 1)));
	json_object_set_new(j->result, "entries", json_integer(strtoll(PQgetvalue(r, 0, 2), NULL, 10)));
	json_object_set_new(j->result, "set_digest", json_string(PQgetvalue(r, 0, 3)));
	json_object_set_new(j->result, "rows", json_integer(strtoll(PQgetvalue(r, 0, 4), NULL, 10)));
	PQclear(r);
	/* Both forms from the rows, streamed: the set digest is what counts,
	 * the sum is what the parent's Pong carries. */
	digest_t sum;
	digest_zero(&sum);
	ret = state_sum_hashes(conn, "SELECT entry_hash FROM updates", &sum, j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	char hex[65];
	digest_hex(&sum, hex);
	json_object_set_new(j->result, "recomputed_digest", json_string(hex));
	digest_set_hex(&sum, hex);
	json_object_set_new(j->result, "recomputed_set_digest", json_string(hex));
	return db_exec(conn, "COMMIT", j->err, sizeof(j->err));
}

static void verify_after(ctl_job_t *j)
{
	daemon_t *d = j->d;
	json_t *o = j->result;
	const char *stored = json_string_value(json_object_get(o, "digest"));
	const char *recomputed = json_string_value(json_object_get(o, "recomputed_digest"));
	const char *set = json_string_value(json_object_get(o, "set_digest"));
	const char *reset = json_string_value(json_object_get(o, "recomputed_set_digest"));
	bool self_ok = stored && recomputed && strcmp(stored, recomputed) == 0 &&
	               set && reset && strcmp(set, reset) == 0 &&
	               json_integer_value(json_object_get(o, "rows")) ==
	               json_integer_value(json_object_get(o, "entries"));
	bool equal = self_ok;
	uint64_t pv = 0;
	uint8_t pd[32];
	if (d->site.parent) {
		json_object_set_new(o, "parent", json_string(parent_link_site(d->site.parent)));
		if (parent_link_digest(d->site.parent, &pv, pd)) {
			digest_t pdig;
			memcpy(pdig.b, pd, 32);
			char hex[65];
			digest_hex(&pdig, hex);
			json_object_set_new(o, "parent_version", json_integer((json_int_t)pv));
			json_object_set_new(o, "parent_digest", json_string(hex));
			equal = equal && pv == (uint64_t)json_integer_value(json_object_get(o, "version")) &&
			        strcmp(hex, stored) == 0;
			if (pv != (uint64_t)json_integer_value(json_object_get(o, "version")))
				json_object_set_new(o, "reason", json_string("parent holds another version"));
			else if (strcmp(hex, stored) != 0)
				json_object_set_new(o, "reason", json_string("digest differs from the parent's"));
		} else {
			equal = false;
			json_object_set_new(o, "parent_version", json_null());
			json_object_set_new(o, "parent_digest", json_null());
			json_object_set_new(o, "reason", json_string("parent not reachable"));
		}
	} else {
		json_object_set_new(o, "parent", json_null());
	}
	/* Which comparison there was: none at the top, none by design at a
	 * disconnected site (its bundles were checked on import). */
	json_object_set_new(o, "mode", json_string(conf_is_top(d->site.conf) ? "top" : d->site.parent ?
	                                           "connected" : "disconnected"));
	if (!self_ok)
		json_object_set_new(o, "reason", json_string("stored rows do not match the stored digest"));
	json_object_set_new(o, "equal", json_boolean(equal));
}

static void cmd_verify(ctl_req_t *req, const json_t *args, void *arg)
{
	ctl_job_submit(arg, req, args, verify_work, verify_after);
}

/* ---- catalog queries ------------------------------------------------- */

/* release_date as the upstream wrote it (any offset) and, when it is an
 * ISO 8601 time, the same instant in UTC, which listings print. */
static void release_date_utc(json_t *o)
{
	const char *raw = json_string_value(json_object_get(o, "release_date"));
	double t;
	if (raw == NULL || raw[0] == '\0' || http_parse_iso8601(raw, &t) != SS_EOK) {
		json_object_set_new(o, "release_date_utc", json_string(raw ? raw : ""));
		return;
	}
	time_t secs = (time_t)t;
	struct tm tm;
	char buf[32];
	gmtime_r(&secs, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(o, "release_date_utc", json_string(buf));
}

/* `updates list --version N`: N must be a version whose changes this
 * site still keeps (after change_floor, at most the version held). On
 * success \a info holds the version's counts. */
static int updates_version_check(PGconn *conn, ctl_job_t *j, const char *version, json_t **info)
{
	uint64_t st[2];
	int ret = db_query_u64(conn, "SELECT version, change_floor FROM catalog_state", 0, NULL, st, 2,
	                       j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	uint64_t n = strtoull(version, NULL, 10);
	if (n > st[0]) {
		snprintf(j->err, sizeof(j->err), "no version %s here: this site holds version %" PRIu64,
		         version, st[0]);
		return SS_ENOENT;
	}
	if (n <= st[1]) {
		snprintf(j->err, sizeof(j->err), "the changes of version %s are no longer kept here: "
		         "the change log starts after version %" PRIu64 " ([replication] keep_versions)",
		         version, st[1]);
		return SS_ENOENT;
	}
	const char *p[] = { version };
	PGresult *r = NULL;
	ret = db_query(conn, "SELECT version, added, changed, removed, expired, full_pull, "
	               "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at "
	               "FROM catalog_versions WHERE version = $1::bigint", 1, p, &r, j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	json_t *rows = rows_json(r);
	PQclear(r);
	*info = json_array_size(rows) == 1 ? json_incref(json_array_get(rows, 0)) :
	        json_pack("{s:I}", "version", (json_int_t)n);
	json_decref(rows);
	return SS_EOK;
}

static int updates_list_work(PGconn *conn, ctl_job_t *j)
{
	const char *p[6] = {
		arg_str(j->args, "product"), arg_str(j->args, "classification"),
		arg_str(j->args, "severity"), arg_str(j->args, "text"), NULL, NULL,
	};
	char limit[24], version[24];
	json_int_t lim = json_integer_value(json_object_get(j->args, "limit"));
	snprintf(limit, sizeof(limit), "%lld", (long long)(lim > 0 ? lim : 100));
	p[4] = limit;
	json_t *vinfo = NULL;
	json_t *v = json_object_get(j->args, "version");
	if (v != NULL) {
		if (!json_is_integer(v) || json_integer_value(v) < 1) {
			snprintf(j->err, sizeof(j->err), "version must be a positive number");
			return SS_EINVAL;
		}
		snprintf(version, sizeof(version), "%lld", (long long)json_integer_value(v));
		p[5] = version;
		int ret = updates_version_check(conn, j, version, &vinfo);
		if (ret != SS_EOK)
			return ret;
	}
	PGresult *r = NULL;
	/* With a version: the entries it touched that are held now (added, or
	 * changed when an older kept version touched them too; "updated" when
	 * the log cannot tell), then the ones it removed. */
	int ret = db_query(conn,
		"SELECT update_id::text AS update_id, revision, title, products, classification, severity, "
		"kb_article, release_date, expired, source, vendor, "
		"array_to_json(products)::text AS products_json, "
		"array_to_json(ARRAY(SELECT coalesce(nullif(c.title, ''), p.id) FROM unnest(products) "
		"  WITH ORDINALITY p(id, n) LEFT JOIN categories c ON c.kind = 'product' AND c.id = p.id "
		"  ORDER BY p.n))::text AS product_titles_json, "
		"coalesce((SELECT nullif(c.title, '') FROM categories c WHERE c.kind = 'classification' "
		"  AND c.id = u.classification), u.classification) AS classification_title, "
		"CASE WHEN $6::bigint IS NULL THEN NULL "
		"  WHEN EXISTS (SELECT 1 FROM changes c WHERE c.update_id = u.update_id "
		"    AND c.version < $6::bigint) THEN 'changed' "
		"  WHEN (SELECT change_floor FROM catalog_state) = 0 THEN 'added' ELSE 'updated' END AS change "
		"FROM updates u "
		"WHERE ($6::bigint IS NULL OR update_id IN (SELECT update_id FROM changes "
		"  WHERE version = $6::bigint)) "
		"AND ($1::text IS NULL OR EXISTS (SELECT 1 FROM unnest(products) p(id) WHERE lower(p.id) = "
		"  lower($1)) OR products && ARRAY(SELECT id FROM categories WHERE kind = 'product' "
		"  AND lower(title) = lower($1))) "
		"AND ($2::text IS NULL OR lower(classification) = lower($2) OR classification IN "
		"  (SELECT id FROM categories WHERE kind = 'classification' AND lower(title) = lower($2))) "
		"AND ($3::text IS NULL OR lower(severity) = lower($3)) "
		"AND ($4::text IS NULL OR title ILIKE '%' || $4 || '%' OR kb_article = $4 "
		"  OR update_id::text = lower($4)) "
		"ORDER BY release_date DESC, update_id LIMIT $5::bigint",
		6, p, &r, j->err, sizeof(j->err));
	if (ret != SS_EOK) {
		json_decref(vinfo);
		return ret;
	}
	json_t *rows = rows_json(r);
	size_t i;
	json_t *o;
	json_array_foreach(rows, i, o) {
		json_t *prods = json_loads(json_string_value(json_object_get(o, "products_json")), 0, NULL);
		json_object_set_new(o, "products", prods ? prods : json_array());
		json_object_del(o, "products_json");
		json_t *titles = json_loads(json_string_value(json_object_get(o, "product_titles_json")),
		                            0, NULL);
		json_object_set_new(o, "product_titles", titles ? titles : json_array());
		json_object_del(o, "product_titles_json");
		release_date_utc(o);
	}
	PQclear(r);
	if (vinfo != NULL && p[0] == NULL && p[1] == NULL && p[2] == NULL && p[3] == NULL) {
		/* Removed entries have no content left to filter: listed unfiltered only. */
		const char *q[] = { version, limit };
		ret = db_query(conn, "SELECT c.update_id::text AS update_id, CASE WHEN EXISTS "
		               "(SELECT 1 FROM changes l WHERE l.update_id = c.update_id AND l.version > "
		               "c.version) THEN 'removed later' ELSE 'removed' END AS change "
		               "FROM changes c WHERE c.version = $1::bigint AND NOT EXISTS "
		               "(SELECT 1 FROM updates u WHERE u.update_id = c.update_id) "
		               "ORDER BY c.update_id LIMIT $2::bigint", 2, q, &r, j->err, sizeof(j->err));
		if (ret != SS_EOK) {
			json_decref(rows);
			json_decref(vinfo);
			return ret;
		}
		json_t *gone = rows_json(r);
		PQclear(r);
		json_array_extend(rows, gone);
		json_decref(gone);
	}
	j->result = json_object();
	json_object_set_new(j->result, "updates", rows);
	if (vinfo != NULL)
		json_object_set_new(j->result, "version", vinfo);
	else
		json_array_foreach(rows, i, o)
			json_object_del(o, "change");
	return SS_EOK;
}

static void cmd_updates_list(ctl_req_t *req, const json_t *args, void *arg)
{
	ctl_job_submit(arg, req, args, updates_list_work, NULL);
}

static json_t *strv_json(char **v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i]));
	return a;
}

static int updates_show_work(PGconn *conn, ctl_job_t *j)
{
	const char *p[] = { arg_str(j->args, "id") };
	PGresult *r = NULL;
	int ret = db_query(conn, "SELECT revision, content, source, "
		"array_to_json(ARRAY(SELECT coalesce(nullif(c.title, ''), p.id) FROM unnest(products) "
		"  WITH ORDINALITY p(id, n) LEFT JOIN categories c ON c.kind = 'product' AND c.id = p.id "
		"  ORDER BY p.n))::text, "
		"coalesce((SELECT nullif(c.title, '') FROM categories c WHERE c.kind = 'classification' "
		"  AND c.id = u.classification), u.classification) "
		"FROM updates u WHERE update_id::text = lower($1)", 1, p, &r, j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	if (PQntuples(r) != 1) {
		PQclear(r);
		snprintf(j->err, sizeof(j->err), "no update %s in this site's catalog", p[0] ? p[0] : "");
		return SS_ENOENT;
	}
	size_t n = 0;
	unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &n);
	Sitesync__UpdateContent *u = raw ? sitesync__update_content__unpack(NULL, n, raw) : NULL;
	PQfreemem(raw);
	if (u == NULL) {
		PQclear(r);
		snprintf(j->err, sizeof(j->err), "stored content of %s does not decode", p[0]);
		return SS_EMALF;
	}
	json_t *o = json_object();
	json_object_set_new(o, "update_id", json_string(u->update_id));
	json_object_set_new(o, "revision", json_integer(strtoll(PQgetvalue(r, 0, 0), NULL, 10)));
	json_object_set_new(o, "title", json_string(u->title));
	json_object_set_new(o, "description", json_string(u->description));
	json_object_set_new(o, "vendor", json_string(u->vendor));
	json_object_set_new(o, "products", strv_json(u->products, u->n_products));
	json_object_set_new(o, "classification", json_string(u->classification));
	json_object_set_new(o, "classification_title", json_string(PQgetvalue(r, 0, 4)));
	json_t *titles = json_loads(PQgetvalue(r, 0, 3), 0, NULL);
	json_object_set_new(o, "product_titles", titles ? titles : json_array());
	json_object_set_new(o, "languages", strv_json(u->languages, u->n_languages));
	json_object_set_new(o, "severity", json_string(u->severity));
	json_object_set_new(o, "kb_article", json_string(u->kb_article));
	json_object_set_new(o, "security_bulletin", json_string(u->security_bulletin));
	json_object_set_new(o, "cve_ids", strv_json(u->cve_ids, u->n_cve_ids));
	json_object_set_new(o, "release_date", json_string(u->release_date));
	release_date_utc(o);
	json_object_set_new(o, "supersedes", strv_json(u->supersedes, u->n_supersedes));
	json_object_set_new(o, "prerequisites", strv_json(u->prerequisites, u->n_prerequisites));
	json_object_set_new(o, "bundled", strv_json(u->bundled, u->n_bundled));
	json_t *files = json_array();
	for (size_t i = 0; i < u->n_files; i++) {
		json_t *f = json_object();
		json_object_set_new(f, "name", json_string(u->files[i]->name));
		json_object_set_new(f, "size", json_integer((json_int_t)u->files[i]->size));
		json_object_set_new(f, "sha1", json_string(u->files[i]->sha1));
		json_object_set_new(f, "sha256", json_string(u->files[i]->sha256));
		json_object_set_new(f, "url", json_string(u->files[i]->url));
		json_array_append_new(files, f);
	}
	json_object_set_new(o, "files", files);
	json_object_set_new(o, "expired", json_boolean(u->expired));
	json_object_set_new(o, "source", json_string(PQgetvalue(r, 0, 2)));
	json_object_set_new(o, "more_info_url", json_string(u->more_info_url));
	json_object_set_new(o, "support_url", json_string(u->support_url));
	json_object_set_new(o, "original_xml", json_string(u->original_xml));
	sitesync__update_content__free_unpacked(u, NULL);
	PQclear(r);
	j->result = o;
	return SS_EOK;
}

static void cmd_updates_show(ctl_req_t *req, const json_t *args, void *arg)
{
	ctl_job_submit(arg, req, args, updates_show_work, NULL);
}

static const char *kind_arg(const json_t *args)
{
	const char *k = arg_str(args, "kind");
	if (k && (!strcmp(k, "product") || !strcmp(k, "classification") ||
	          !strcmp(k, "language") || !strcmp(k, "vendor")))
		return k;
	return NULL;
}

static int category_list_work(PGconn *conn, ctl_job_t *j)
{
	const char *p[] = { kind_arg(j->args) };
	PGresult *r = NULL;
	const char *count_expr =
		!strcmp(p[0], "product") ? "(SELECT count(*) FROM updates u WHERE c.id = ANY(u.products))" :
		!strcmp(p[0], "classification") ? "(SELECT count(*) FROM updates u WHERE u.classification = c.id)" :
		!strcmp(p[0], "language") ? "(SELECT count(*) FROM updates u WHERE c.id = ANY(u.languages))" :
		"(SELECT count(*) FROM updates u WHERE u.vendor = c.id)";
	/* group: what a WSUS upstream files the category under (a product's
	 * family or vendor, by title); empty for catalog upstreams. */
	char sql[768];
	snprintf(sql, sizeof(sql), "SELECT c.id, c.title, c.selected, %s AS updates, "
	         "coalesce((SELECT g.title FROM categories g WHERE g.id = c.parent_id "
	         "AND g.kind IN ('product', 'vendor') ORDER BY g.kind LIMIT 1), '') AS \"group\", "
	         "c.selected OR NOT EXISTS (SELECT 1 FROM categories s WHERE s.kind = c.kind "
	         "AND s.selected) AS synced "
	         "FROM categories c WHERE c.kind = $1 ORDER BY c.title, c.id", count_expr);
	int ret = db_query(conn, sql, 1, p, &r, j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	j->result = json_object();
	json_object_set_new(j->result, "kind", json_string(p[0]));
	json_object_set_new(j->result, "items", rows_json(r));
	PQclear(r);
	return SS_EOK;
}

/* The CLI command that lists a kind, for error messages. */
static const char *category_cmd(const char *kind)
{
	if (strcmp(kind, "product") == 0)
		return "products";
	if (strcmp(kind, "classification") == 0)
		return "classifications";
	if (strcmp(kind, "language") == 0)
		return "languages";
	return "vendors";
}

static int category_select_work(PGconn *conn, ctl_job_t *j, bool selected)
{
	const char *kind = kind_arg(j->args);
	json_t *ids = json_object_get(j->args, "ids");
	json_t *done = json_array();
	size_t i;
	json_t *id;
	uint64_t known = 0;
	const char *kp[] = { kind };
	/* All or nothing: one unknown id leaves the selection as it was. */
	int ret = db_exec(conn, "BEGIN", j->err, sizeof(j->err));
	if (ret == SS_EOK)
		ret = db_query_u64(conn, "SELECT count(*) FROM categories WHERE kind = $1", 1, kp, &known, 1,
		                   j->err, sizeof(j->err));
	json_array_foreach(ids, i, id) {
		if (ret != SS_EOK)
			break;
		if (!json_is_string(id))
			continue;
		const char *p[] = { kind, json_string_value(id), selected ? "true" : "false" };
		PGresult *r = NULL;
		/* Any case matches the known id or title; the row keeps its own spelling. */
		ret = db_query(conn, "UPDATE categories SET selected = $3::boolean WHERE kind = $1 "
		               "AND (lower(id) = lower($2) OR lower(title) = lower($2)) RETURNING id",
		               3, p, &r, j->err, sizeof(j->err));
		if (ret != SS_EOK)
			break;
		int n = PQntuples(r);
		for (int k = 0; k < n; k++)
			json_array_append_new(done, json_string(PQgetvalue(r, k, 0)));
		PQclear(r);
		if (n > 0)
			continue;
		/* Before the first sync no category is known yet: a selection made
		 * ahead of it is kept and takes effect then. */
		if (!selected || known > 0) {
			snprintf(j->err, sizeof(j->err), "no %s '%s' is known (see `sitesync %s list`); "
			         "nothing was changed", kind, json_string_value(id), category_cmd(kind));
			ret = SS_ENOENT;
			break;
		}
		ret = db_execp(conn, "INSERT INTO categories (kind, id, title, selected) VALUES ($1, $2, $2, true)",
		               2, p, j->err, sizeof(j->err));
		if (ret == SS_EOK)
			json_array_append(done, id);
	}
	if (ret != SS_EOK) {
		db_exec(conn, "ROLLBACK", NULL, 0);
		json_decref(done);
		return ret;
	}
	if ((ret = db_exec(conn, "COMMIT", j->err, sizeof(j->err))) != SS_EOK) {
		json_decref(done);
		return ret;
	}
	j->result = json_object();
	json_object_set_new(j->result, selected ? "selected" : "deselected", done);
	json_object_set_new(j->result, "note", json_string("the selection applies from the next sync"));
	return SS_EOK;
}

static int category_sel_work(PGconn *conn, ctl_job_t *j)
{
	return category_select_work(conn, j, true);
}

static int category_desel_work(PGconn *conn, ctl_job_t *j)
{
	return category_select_work(conn, j, false);
}

static void cmd_category(ctl_req_t *req, const json_t *args, void *arg)
{
	if (kind_arg(args) == NULL) {
		ctl_reply_error(req, SS_EINVAL, "kind must be product, classification, language or vendor");
		return;
	}
	const char *cmd = ctl_req_cmd(req);
	bool list = strcmp(cmd, "category.list") == 0;
	if (!list && !json_is_array(json_object_get(args, "ids"))) {
		ctl_reply_error(req, SS_EINVAL, "ids must be a list");
		return;
	}
	ctl_job_fn fn = list ? category_list_work :
	                strcmp(cmd, "category.select") == 0 ? category_sel_work : category_desel_work;
	ctl_job_submit(arg, req, args, fn, NULL);
}

static int history_work(PGconn *conn, ctl_job_t *j)
{
	char limit[24];
	json_int_t lim = json_integer_value(json_object_get(j->args, "limit"));
	snprintf(limit, sizeof(limit), "%lld", (long long)(lim > 0 ? lim : 50));
	const char *p[] = { limit };
	PGresult *r = NULL;
	int ret = db_query(conn, "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at, "
	                   "site, msg_id, severity, text FROM status_messages ORDER BY status_messages.at DESC, id DESC LIMIT $1::bigint",
	                   1, p, &r, j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	j->result = json_object();
	json_object_set_new(j->result, "messages", rows_json(r));
	PQclear(r);
	ret = db_query(conn, "SELECT version, entries, added, changed, removed, expired, full_pull, "
	               "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS at, "
	               "encode(digest, 'hex') AS digest FROM catalog_versions WHERE version > 0 "
	               "ORDER BY version DESC LIMIT $1::bigint", 1, p, &r, j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	json_object_set_new(j->result, "versions", rows_json(r));
	PQclear(r);
	/* What `history` prints as Syncs: one row per sync, pull or import. */
	ret = db_query(conn, "SELECT kind, "
	               "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS started_at, "
	               "to_char(ended_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS ended_at, "
	               "coalesce(extract(epoch FROM ended_at - started_at)::bigint, 0) AS duration_s, "
	               "sync_trigger AS trigger, source, "
	               "result, from_version, to_version, added, changed, removed, expired, "
	               "error_code, error, nullif(by_source, '') AS by_source FROM sync_history ORDER BY id DESC LIMIT $1::bigint",
	               1, p, &r, j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	json_object_set_new(j->result, "syncs", rows_json(r));
	PQclear(r);
	return SS_EOK;
}

/* What the next sync's selection would remove from the catalog as held:
 * the entries from upstream that no longer match (the same rule as the
 * sync's, upstream/sync.c: a [source] that lists a kind selects its own
 * entries, as update_sources names them, by that list), for `sitesync
 * sync`'s confirmation. */
static int preview_work(PGconn *conn, ctl_job_t *j)
{
	uint64_t v[2];
	char *lists = json_dumps(json_object_get(j->args, "own_selection"), JSON_COMPACT);
	const char *p[] = { lists ? lists : "[]" };
	int ret = db_query_u64(conn, "WITH r AS (SELECT * FROM json_to_recordset($1::json) "
		"  AS x(name text, products text, classifications text, languages text)) "
		"SELECT count(*) FILTER (WHERE u.source = 'upstream' AND NOT ("
		"(CASE WHEN r.products IS NOT NULL THEN u.products && string_to_array(r.products, ',') ELSE "
		"(NOT EXISTS (SELECT 1 FROM categories WHERE kind = 'product' AND selected) "
		"  OR u.products && ARRAY(SELECT id FROM categories WHERE kind = 'product' AND selected)) END) "
		"AND (CASE WHEN r.classifications IS NOT NULL "
		"  THEN lower(u.classification) = ANY (string_to_array(r.classifications, ',')) ELSE "
		"(NOT EXISTS (SELECT 1 FROM categories WHERE kind = 'classification' AND selected) "
		"  OR u.classification IN (SELECT id FROM categories WHERE kind = 'classification' AND selected)) END) "
		"AND (CASE WHEN r.languages IS NOT NULL "
		"  THEN u.languages = '{}' OR u.languages && string_to_array(r.languages, ',') ELSE "
		"(NOT EXISTS (SELECT 1 FROM categories WHERE kind = 'language' AND selected) "
		"  OR u.languages = '{}' "
		"  OR u.languages && ARRAY(SELECT id FROM categories WHERE kind = 'language' AND selected)) END))), "
		"count(*) FROM updates u LEFT JOIN update_sources o USING (update_id) "
		"LEFT JOIN r ON r.name = o.source", 1, p, v, 2, j->err, sizeof(j->err));
	free(lists);
	if (ret != SS_EOK)
		return ret;
	j->result = json_pack("{s:I, s:I}", "would_remove", (json_int_t)v[0],
	                      "entries", (json_int_t)v[1]);
	return SS_EOK;
}

/* On the loop: which kind of sync `sitesync sync` starts here. */
static void preview_after(ctl_job_t *j)
{
	json_object_set_new(j->result, "top", json_boolean(conf_is_top(j->d->site.conf)));
}

static void cmd_sync_preview(ctl_req_t *req, const json_t *args, void *arg)
{
	daemon_t *d = arg;
	const conf_t *c = d->site.conf;
	/* The sources' own selections, read here on the loop (a reload swaps
	 * the configuration); null keeps the site's selection of that kind. */
	json_t *own = json_array();
	for (size_t i = 0; i < c->n_sources; i++) {
		const conf_source_t *s = &c->sources[i];
		json_array_append_new(own, json_pack("{s:s, s:s?, s:s?, s:s?}", "name", s->name,
		                                     "products", s->products, "classifications",
		                                     s->classifications, "languages", s->languages));
	}
	json_t *a = args ? json_copy((json_t *)args) : json_object();
	json_object_set_new(a, "own_selection", own);
	ctl_job_submit(arg, req, a, preview_work, preview_after);
	json_decref(a);
}

static void cmd_history(ctl_req_t *req, const json_t *args, void *arg)
{
	ctl_job_submit(arg, req, args, history_work, NULL);
}

/* A site holds an update's current revision once it holds the version
 * that last changed it. */
static int where_work(PGconn *conn, ctl_job_t *j)
{
	const char *p[] = { arg_str(j->args, "id") };
	PGresult *r = NULL;
	int ret = db_query(conn,
		"SELECT u.revision, coalesce((SELECT max(version) FROM changes c WHERE c.update_id = u.update_id), "
		"(SELECT change_floor FROM catalog_state)) AS since "
		"FROM updates u WHERE u.update_id::text = lower($1)", 1, p, &r, j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	j->result = json_object();
	json_object_set_new(j->result, "update_id", json_string(p[0] ? p[0] : ""));
	if (PQntuples(r) == 1) {
		json_object_set_new(j->result, "revision", json_integer(strtoll(PQgetvalue(r, 0, 0), NULL, 10)));
		json_object_set_new(j->result, "since_version", json_integer(strtoll(PQgetvalue(r, 0, 1), NULL, 10)));
	} else {
		json_object_set_new(j->result, "revision", json_null());
	}
	PQclear(r);
	return SS_EOK;
}

static void where_after(ctl_job_t *j)
{
	daemon_t *d = j->d;
	json_t *rev = json_object_get(j->result, "revision");
	json_int_t since = json_integer_value(json_object_get(j->result, "since_version"));
	json_t *st = status_json(&d->site);
	json_t *sites = json_array();
	size_t i;
	json_t *row;
	json_array_foreach(json_object_get(st, "sites"), i, row) {
		json_int_t v = json_integer_value(json_object_get(row, "catalog_version"));
		bool holds = !json_is_null(rev) && v >= since;
		json_t *o = json_object();
		json_object_set(o, "site", json_object_get(row, "site"));
		json_object_set_new(o, "holds", json_boolean(holds));
		json_object_set_new(o, "revision", holds ? json_copy(rev) : json_null());
		json_object_set(o, "catalog_version", json_object_get(row, "catalog_version"));
		json_array_append_new(sites, o);
	}
	json_decref(st);
	json_object_set_new(j->result, "sites", sites);
}

static void cmd_where(ctl_req_t *req, const json_t *args, void *arg)
{
	if (arg_str(args, "id") == NULL) {
		ctl_reply_error(req, SS_EINVAL, "an update id is required");
		return;
	}
	ctl_job_submit(arg, req, args, where_work, where_after);
}

int ctl_cmds_register(daemon_t *d)
{
	static const struct {
		const char *name;
		ctl_handler_cb fn;
	} cmds[] = {
		{ "status", cmd_status },
		{ "sync", cmd_sync },
		{ "child.add", cmd_child_add },
		{ "child.remove", cmd_child_remove },
		{ "child.list", cmd_child_list },
		{ "verify", cmd_verify },
		{ "updates.list", cmd_updates_list },
		{ "updates.show", cmd_updates_show },
		{ "category.list", cmd_category },
		{ "category.select", cmd_category },
		{ "category.deselect", cmd_category },
		{ "history", cmd_history },
		{ "sync.preview", cmd_sync_preview },
		{ "where", cmd_where },
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		int ret = ctl_register(d->ctl, cmds[i].name, cmds[i].fn, d);
		if (ret != SS_EOK)
			return ret;
	}
	int ret = ctl_bundle_register(d);
	if (ret == SS_EOK)
		ret = ctl_upstream_register(d);
	if (ret == SS_EOK)
		ret = ctl_settings_register(d);
	return ret;
}
