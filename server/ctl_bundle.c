/*
 * Control commands for disconnected sites (DESIGN §6): "export" writes a
 * bundle of this site's catalog, "import" applies one at a site that has no
 * network link to its parent. The file and database work is in
 * replication/bundle.c on a DB_BULK worker; this file decides whether a
 * command may run, keeps the site's sync status and answers the CLI.
 */
#include "server/ctl_bundle.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "replication/bundle.h"
#include "replication/parent_link.h"
#include "common/conf.h"
#include "server/ctl.h"
#include "server/daemon.h"
#include "common/errcode.h"
#include "common/log.h"
#include "replication/synchist.h"
#include "storage/db.h"

/* One export or import: work on a worker, then answer on the loop. */
typedef struct {
	daemon_t *d;
	ctl_req_t *req;
	/* Copies: a reload may swap d->site.conf while the job runs. */
	char path[PATH_MAX];
	char scratch[PATH_MAX];
	char site[8];
	bundle_export_t ex;
	bundle_import_t im;
	sync_status_t before;   /* import: the row as it was, for "nothing to do" */
} bundle_job_t;

static int export_work(PGconn *conn, void *arg);
static void export_done(int ret, void *arg);
static int import_work(PGconn *conn, void *arg);
static void import_done(int ret, void *arg);

static const char *arg_path(const json_t *args, const char *key)
{
	const char *s = json_string_value(json_object_get(args, key));
	return s && s[0] == '/' && strlen(s) < PATH_MAX ? s : NULL;
}

/* The absolute file path args[key] names, or NULL after replying the error. */
static const char *need_path(ctl_req_t *req, const json_t *args, const char *cmd,
                             const char *key)
{
	const char *p = arg_path(args, key);
	if (p == NULL)
		ctl_reply_error(req, SS_EINVAL, "%s: \"%s\" must be an absolute file path", cmd, key);
	return p;
}

/* A job for req on path, or NULL after replying the error. */
static bundle_job_t *job_new(ctl_req_t *req, daemon_t *d, const char *path)
{
	bundle_job_t *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		ctl_reply_error(req, SS_ENOMEM, "out of memory");
		return NULL;
	}
	j->d = d;
	j->req = req;
	snprintf(j->path, sizeof(j->path), "%s", path);
	return j;
}

static json_t *digest_json(const digest_t *dg, bool set)
{
	char hex[2 * SS_DIGEST_LEN + 1];
	if (set)
		digest_set_hex(dg, hex);
	else
		digest_hex(dg, hex);
	return json_string(hex);
}

/*
 * Bundles are tied to the hierarchy by its CA certificate; a site without
 * one configured could neither label its exports nor check an import.
 */
static bool have_hierarchy(ctl_req_t *req, const daemon_t *d)
{
	/* setup_tls() leaves the id zero unless [tls] ca, cert and key all load. */
	static const uint8_t zero[SS_BUNDLE_ID_LEN];
	if (memcmp(d->site.hierarchy_id, zero, sizeof(zero)) != 0)
		return true;
	ctl_reply_error(req, SS_ECONFIG, "%s has no [tls] ca, cert and key: bundles are checked "
	                "against the hierarchy's CA certificate, configure them first",
	                d->site.conf->site_code);
	return false;
}

/* ---- export ----------------------------------------------------------- */

static int export_work(PGconn *conn, void *arg)
{
	bundle_job_t *j = arg;
	return bundle_export(conn, &j->ex);
}

static void export_done(int ret, void *arg)
{
	bundle_job_t *j = arg;
	daemon_t *d = j->d;
	bundle_export_t *e = &j->ex;
	if (ret != SS_EOK) {
		log_error("export to %s failed: %s", j->path, e->err);
		ctl_reply_error(j->req, ret, "export failed: %s", e->err);
		free(j);
		return;
	}
	char note[160] = "";
	if (e->fell_back)
		snprintf(note, sizeof(note), "this site's change log no longer reaches version %" PRIu64
		         ": a full snapshot was written instead of a delta", e->since);
	site_message(&d->site, SS_MSG_EXPORTED, "info", "Exported %s of versions %" PRIu64 " to %" PRIu64
	             " into %s: %" PRIu64 " upserts, %" PRIu64 " deletes, %" PRIu64 " bytes%s%s",
	             e->full ? "a full snapshot" : "the changes", e->from, e->to, j->path,
	             e->upserts, e->deletes, e->bytes, note[0] ? "; " : "", note);
	site_synclog(&d->site, "Exported bundle %s (versions %" PRIu64 " to %" PRIu64 "%s)", j->path,
	             e->from, e->to, e->full ? ", full snapshot" : "");
	json_t *o = json_object();
	json_object_set_new(o, "file", json_string(j->path));
	json_object_set_new(o, "from_version", json_integer((json_int_t)e->from));
	json_object_set_new(o, "to_version", json_integer((json_int_t)e->to));
	json_object_set_new(o, "full", json_boolean(e->full));
	json_object_set_new(o, "snapshot_fallback", json_boolean(e->fell_back));
	json_object_set_new(o, "upserts", json_integer((json_int_t)e->upserts));
	json_object_set_new(o, "deletes", json_integer((json_int_t)e->deletes));
	json_object_set_new(o, "entries", json_integer((json_int_t)e->entries));
	json_object_set_new(o, "digest", digest_json(&e->digest, false));
	json_object_set_new(o, "set_digest", digest_json(&e->digest, true));
	json_object_set_new(o, "bytes", json_integer((json_int_t)e->bytes));
	if (note[0])
		json_object_set_new(o, "note", json_string(note));
	ctl_reply(j->req, o);
	free(j);
}

static void cmd_export(ctl_req_t *req, const json_t *args, void *arg)
{
	daemon_t *d = arg;
	const char *out = need_path(req, args, "export", "out");
	if (out == NULL)
		return;
	const json_t *since = json_object_get(args, "since");
	if (since && !json_is_null(since) && (!json_is_integer(since) || json_integer_value(since) < 0)) {
		ctl_reply_error(req, SS_EINVAL, "export: \"since\" must be a catalog version");
		return;
	}
	if (!have_hierarchy(req, d))
		return;
	bundle_job_t *j = job_new(req, d, out);
	if (j == NULL)
		return;
	snprintf(j->scratch, sizeof(j->scratch), "%s", d->site.conf->state_dir);
	snprintf(j->site, sizeof(j->site), "%s", d->site.conf->site_code);
	bundle_export_t *e = &j->ex;
	e->out = j->path;
	e->scratch_dir = j->scratch;
	e->since = json_is_integer(since) ? (uint64_t)json_integer_value(since) : 0;
	e->source_site = j->site;
	memcpy(e->hierarchy_id, d->site.hierarchy_id, SS_BUNDLE_ID_LEN);
	e->batch_entries = d->site.conf->batch_entries;
	e->keys = &d->site.keys;
	/* Keep batches well inside the frame limit, as the spool does. */
	e->batch_bytes = (size_t)d->site.conf->max_frame / 4;
	if (db_submit(d->site.db, DB_BULK, export_work, export_done, j) != SS_EOK) {
		free(j);
		ctl_reply_error(req, SS_ENOMEM, "out of memory");
	}
}

/* ---- import ----------------------------------------------------------- */

/* The import's answer goes out once its history row is written, so a
 * `history` right after `import` lists it. */
typedef struct {
	ctl_req_t *req;
	json_t *data;           /* the success answer; NULL for a failure */
	int code;
	char err[256];
} import_answer_t;

static void import_answer(void *arg)
{
	import_answer_t *a = arg;
	if (a->data)
		ctl_reply(a->req, a->data);
	else
		ctl_reply_error(a->req, a->code, "import failed: %s", a->err);
	free(a);
}

static int import_work(PGconn *conn, void *arg)
{
	bundle_job_t *j = arg;
	return bundle_import(conn, &j->im);
}

static void import_failed(bundle_job_t *j, int ret)
{
	daemon_t *d = j->d;
	/* The errno-range failures of an import are the bundle file's (missing,
	 * unreadable, not a file): operators get a sitesync code, not errno. */
	if (ret < 0 && ret > SS_ERROR_BASE && ret != SS_ENOMEM)
		ret = SS_EFILE;
	sync_status_failed(&d->site, ret, "import: %s", j->im.err);
	site_synclog(&d->site, "Import of %s failed: %s", j->path, j->im.err);
	site_message(&d->site, SS_MSG_SYNC_FAILED, "error", "Import of %s failed: %s (error %d)",
	             j->path, j->im.err, d->site.self.last_error_code);
	site_status_changed(&d->site);
	import_answer_t *a = calloc(1, sizeof(*a));
	if (a == NULL) {
		synchist_record(&d->site, "import", false, d->site.version, d->site.version);
		ctl_reply_error(j->req, ret, "import failed: %s", j->im.err);
		return;
	}
	a->req = j->req;
	a->code = ret;
	snprintf(a->err, sizeof(a->err), "%s", j->im.err);
	synchist_record_then(&d->site, "import", false, d->site.version, d->site.version, "",
	                     import_answer, a);
}

static void import_done(int ret, void *arg)
{
	bundle_job_t *j = arg;
	daemon_t *d = j->d;
	j->d->site.import_running = false;
	if (ret == SS_ESEQ && j->im.apply.to == j->im.apply.held && j->im.apply.held > 0) {
		/* The site already holds what the bundle brings: not a failure,
		 * so the status row goes back to what it said before. */
		d->site.self = j->before;
		site_synclog(&d->site, "Import of %s: nothing to do, %s", j->path, j->im.err);
		site_status_changed(&d->site);
		json_t *o = json_object();
		json_object_set_new(o, "file", json_string(j->path));
		json_object_set_new(o, "nothing_to_do", json_true());
		json_object_set_new(o, "held_version", json_integer((json_int_t)j->im.apply.held));
		json_object_set_new(o, "to_version", json_integer((json_int_t)j->im.apply.to));
		json_object_set_new(o, "note", json_string(j->im.err));
		ctl_reply(j->req, o);
		apply_clear(&j->im.apply);
		free(j);
		return;
	}
	if (ret != SS_EOK) {
		if (j->im.err[0] == '\0')
			snprintf(j->im.err, sizeof(j->im.err), "%s", ss_strerror(ret));
		import_failed(j, ret);
		apply_clear(&j->im.apply);
		free(j);
		return;
	}
	const apply_t *a = &j->im.apply;
	const bundle_info_t *in = &j->im.info;
	sync_status_applied(&d->site, a, "Successfully imported bundle %s exported by %s, version %" PRIu64,
	                    j->path, in->source_site, a->to);
	site_message(&d->site, SS_MSG_IMPORTED, "info", "Imported bundle %s from %s: version %" PRIu64
	             " to %" PRIu64 ", %" PRIu64 " added, %" PRIu64 " changed, %" PRIu64 " removed, %"
	             PRIu64 " expired", j->path, in->source_site, a->held, a->to, a->added,
	             a->changed, a->removed, a->expired);

	json_t *o = json_object();
	json_object_set_new(o, "file", json_string(j->path));
	json_object_set_new(o, "source_site", json_string(in->source_site));
	json_object_set_new(o, "held_version", json_integer((json_int_t)a->held));
	json_object_set_new(o, "from_version", json_integer((json_int_t)a->from));
	json_object_set_new(o, "to_version", json_integer((json_int_t)a->to));
	json_object_set_new(o, "full", json_boolean(a->full));
	json_object_set_new(o, "upserts", json_integer((json_int_t)a->upserts));
	json_object_set_new(o, "deletes", json_integer((json_int_t)a->deletes));
	json_object_set_new(o, "added", json_integer((json_int_t)a->added));
	json_object_set_new(o, "changed", json_integer((json_int_t)a->changed));
	json_object_set_new(o, "removed", json_integer((json_int_t)a->removed));
	json_object_set_new(o, "entries", json_integer((json_int_t)a->entries));
	json_object_set_new(o, "digest", digest_json(&a->digest, false));
	json_object_set_new(o, "set_digest", digest_json(&a->digest, true));
	/* Children pull from here now; the status row goes up if a parent is linked. */
	site_trust_announced(&d->site, a->key_announced, a->next_key);
	import_answer_t *ans = calloc(1, sizeof(*ans));
	if (ans != NULL) {
		ans->req = j->req;
		ans->data = o;
		synchist_record_then(&d->site, "import", false, d->site.version, a->to, "",
		                     import_answer, ans);
	} else {
		synchist_record(&d->site, "import", false, d->site.version, a->to);
	}
	site_version_committed(&d->site, a->to, &a->digest, a->entries, a->full);
	if (ans == NULL)
		ctl_reply(j->req, o);
	apply_clear(&j->im.apply);
	free(j);
}

static void cmd_import(ctl_req_t *req, const json_t *args, void *arg)
{
	const char *file = need_path(req, args, "import", "file");
	if (file == NULL)
		return;
	daemon_t *d = arg;
	if (conf_is_top(d->site.conf)) {
		ctl_reply_error(req, SS_ENOTTOP, "%s is the top site: it builds its catalog from "
		                "upstream and imports no bundles", d->site.conf->site_code);
		return;
	}
	if (!have_hierarchy(req, d))
		return;
	if (d->site.parent && parent_link_busy(d->site.parent)) {
		ctl_reply_error(req, SS_EBUSY, "a pull from the parent is in progress; import when "
		                "it is done");
		return;
	}
	if (d->site.import_running) {
		ctl_reply_error(req, SS_EBUSY, "another import is running");
		return;
	}
	bundle_job_t *j = job_new(req, d, file);
	if (j == NULL)
		return;
	bundle_import_t *im = &j->im;
	im->path = j->path;
	im->limit = conf_stream_frame_limit(d->site.conf);
	im->keep_versions = d->site.conf->keep_versions;
	manifest_keys_copy(&im->apply.keys, &d->site.keys);
	memcpy(im->hierarchy_id, d->site.hierarchy_id, SS_BUNDLE_ID_LEN);
	if (db_submit(d->site.db, DB_BULK, import_work, import_done, j) != SS_EOK) {
		apply_clear(&im->apply);
		free(j);
		ctl_reply_error(req, SS_ENOMEM, "out of memory");
		return;
	}
	d->site.import_running = true;
	j->before = d->site.self;

	sync_status_t *s = &d->site.self;
	s->state = SITESYNC__SYNC_STATE__SYNC_SYNCING;
	s->last_start = time(NULL);
	s->progress_done = s->progress_total = 0;
	snprintf(s->trigger, sizeof(s->trigger), "import");
	snprintf(s->source, sizeof(s->source), "bundle %s", j->path);
	site_synclog(&d->site, "Starting import of bundle %s", j->path);
	site_message(&d->site, SS_MSG_SYNC_STARTED, "info", "Importing bundle %s: this site holds "
	             "version %" PRIu64, j->path, d->site.version);
	site_status_changed(&d->site);
}

int ctl_bundle_register(struct daemon *d)
{
	int ret = ctl_register(d->ctl, "export", cmd_export, d);
	if (ret == SS_EOK)
		ret = ctl_register(d->ctl, "import", cmd_import, d);
	return ret;
}
