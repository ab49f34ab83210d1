/*
 * Control command "import-update" {"from", "id"}: one update from a catalog
 * URL or file into the top site's catalog (upstream/import.c runs on a
 * bulk database worker), then the new version goes down the tree like an
 * upstream sync's.
 */
#include "server/ctl_upstream.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "catalog/entry.h"
#include "server/ctl.h"
#include "server/daemon.h"
#include "common/errcode.h"
#include "common/log.h"
#include "server/topsync.h"
#include "storage/db.h"
#include "upstream/import.h"
#include "upstream/remove.h"
#include "upstream/sync.h"

/* One import in flight: the request stays valid until answered. */
typedef struct {
	daemon_t *d;
	ctl_req_t *req;
} import_call_t;

/* What import-update and remove-update answer when done. */
static json_t *edit_job_result(const upstream_job_t *job)
{
	return json_pack("{s:s, s:I, s:I}", "update_id", job->import_id,
	                 "revision", (json_int_t)job->revision,
	                 "version", (json_int_t)job->version);
}

/* The call that owns job, then job. */
static void edit_job_free(upstream_job_t *job)
{
	if (job != NULL)
		free(job->owner);
	upstream_job_free(job);
}

static void import_done_cb(int ret, void *arg)
{
	upstream_job_t *job = arg;
	import_call_t *call = job->owner;
	daemon_t *d = call->d;
	char shown[512];
	log_url_redact(job->url, shown, sizeof(shown));
	if (ret != SS_EOK) {
		site_synclog(&d->site, "Import of update %s from %s failed: %s", job->import_id, shown, job->err);
		ctl_reply_error(call->req, ret, "import-update: %s", job->err);
		goto done;
	}
	if (job->unchanged) {
		site_synclog(&d->site, "Imported update %s from %s: already present with the same content "
		             "(revision %" PRIu32 "), version stays %" PRIu64,
		             job->import_id, shown, job->revision, job->version);
	} else {
		site_synclog(&d->site, "Imported update %s revision %" PRIu32 " from %s (%s), new catalog "
		             "version is %" PRIu64, job->import_id, job->revision, shown,
		             job->added ? "added" : "changed", job->version);
		site_version_committed(&d->site, job->version, &job->digest, job->entries, false);
	}
	ctl_reply(call->req, edit_job_result(job));
done:
	edit_job_free(job);
}

/*
 * What import-update and remove-update both need: the top site, the active
 * writer, no upstream sync running, and id a UUID, lowered into lid. False
 * after replying the refusal.
 */
static bool catalog_edit_ok(ctl_req_t *req, const daemon_t *d, const char *cmd,
                            const char *id, char lid[40])
{
	if (!conf_is_top(d->site.conf)) {
		ctl_reply_error(req, SS_ENOTTOP, "%s runs at the top site only; "
		                "this site gets its catalog from its parent", cmd);
		return false;
	}
	/* A standby shares the database with the active writer: only it commits. */
	if (!d->site.active) {
		ctl_reply_error(req, SS_ELOCKED, "this daemon is a standby; run %s on the "
		                "active one (it holds the writer lock)", cmd);
		return false;
	}
	/* The sync would race the import for version V+1 and could undo it. */
	if (topsync_running(d)) {
		ctl_reply_error(req, SS_EBUSY, "an upstream sync is running; run %s "
		                "again when it has finished", cmd);
		return false;
	}
	size_t n = strlen(id);
	if (n >= 40) {
		ctl_reply_error(req, SS_EINVAL, "'%.60s' is not an update id (UUID)", id);
		return false;
	}
	for (size_t i = 0; i <= n; i++)
		lid[i] = (char)tolower((unsigned char)id[i]);
	if (!entry_id_valid(lid)) {
		ctl_reply_error(req, SS_EINVAL, "'%s' is not an update id (UUID)", id);
		return false;
	}
	return true;
}

/* A job for the update lid, owned by a new call for req; NULL when out of memory. */
static upstream_job_t *edit_job_new(ctl_req_t *req, daemon_t *d, const char *lid)
{
	import_call_t *call = calloc(1, sizeof(*call));
	upstream_job_t *job = calloc(1, sizeof(*job));
	if (call == NULL || job == NULL || (job->import_id = strdup(lid)) == NULL) {
		free(call);
		upstream_job_free(job);
		return NULL;
	}
	call->d = d;
	call->req = req;
	job->owner = call;
	job->keep_versions = d->site.conf->keep_versions;
	return job;
}

static void cmd_import_update(ctl_req_t *req, const json_t *args, void *arg)
{
	daemon_t *d = arg;
	const char *from = json_string_value(json_object_get(args, "from"));
	const char *id = json_string_value(json_object_get(args, "id"));
	if (from == NULL || from[0] == '\0' || id == NULL) {
		ctl_reply_error(req, SS_EINVAL, "import-update needs \"from\" and \"id\"");
		return;
	}
	char lid[40];
	if (!catalog_edit_ok(req, d, "import-update", id, lid))
		return;

	upstream_job_t *job = edit_job_new(req, d, lid);
	if (job == NULL)
		goto nomem;
	const conf_t *c = d->site.conf;
	job->url = strdup(from);
	job->state_dir = strdup(c->state_dir);
	job->ca_file = c->upstream_ca ? strdup(c->upstream_ca) : NULL;
	job->proxy = c->upstream_proxy ? strdup(c->upstream_proxy) : NULL;
	job->connect_timeout = c->upstream_connect_timeout;
	job->timeout = c->upstream_timeout;
	job->max_bytes = (uint64_t)c->upstream_max_mib * 1024 * 1024;
	job->max_entry_bytes = (size_t)c->max_entry_bytes;
	if (job->url == NULL || job->state_dir == NULL)
		goto nomem;
	site_synclog(&d->site, "Importing update %s from %s", lid, from);
	if (db_submit(d->site.db, DB_BULK, upstream_import_work, import_done_cb, job) != SS_EOK)
		goto nomem;
	return;
nomem:
	edit_job_free(job);
	ctl_reply_error(req, SS_ENOMEM, "out of memory");
}

/* ---- remove-update: take a hand-imported update out again ---- */

static void remove_done_cb(int ret, void *arg)
{
	upstream_job_t *job = arg;
	import_call_t *call = job->owner;
	daemon_t *d = call->d;
	if (ret != SS_EOK) {
		ctl_reply_error(call->req, ret, "remove-update: %s", job->err);
		goto done;
	}
	site_synclog(&d->site, "Removed imported update %s revision %" PRIu32 ", new catalog "
	             "version is %" PRIu64, job->import_id, job->revision, job->version);
	site_message(&d->site, SS_MSG_UPDATE_REMOVED, "info", "Removed imported update %s "
	             "(revision %" PRIu32 "): version %" PRIu64, job->import_id, job->revision,
	             job->version);
	site_version_committed(&d->site, job->version, &job->digest, job->entries, false);
	ctl_reply(call->req, edit_job_result(job));
done:
	edit_job_free(job);
}

static void cmd_remove_update(ctl_req_t *req, const json_t *args, void *arg)
{
	daemon_t *d = arg;
	const char *id = json_string_value(json_object_get(args, "id"));
	if (id == NULL) {
		ctl_reply_error(req, SS_EINVAL, "remove-update needs \"id\"");
		return;
	}
	char lid[40];
	if (!catalog_edit_ok(req, d, "remove-update", id, lid))
		return;
	upstream_job_t *job = edit_job_new(req, d, lid);
	if (job == NULL ||
	    db_submit(d->site.db, DB_BULK, upstream_remove_work, remove_done_cb, job) != SS_EOK)
		goto nomem;
	return;
nomem:
	edit_job_free(job);
	ctl_reply_error(req, SS_ENOMEM, "out of memory");
}

int ctl_upstream_register(struct daemon *d)
{
	int ret = ctl_register(d->ctl, "import-update", cmd_import_update, d);
	if (ret == SS_EOK)
		ret = ctl_register(d->ctl, "remove-update", cmd_remove_update, d);
	return ret;
}
