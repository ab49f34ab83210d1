/* Run-time settings of the top site's upstream sync, from the CLI. */
#include "server/ctl_settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "common/errcode.h"
#include "replication/site.h"
#include "server/ctl.h"
#include "server/daemon.h"
#include "storage/db.h"

/* What upstream/sync.c and upstream/expire.c read at each sync. */
static const struct setting {
	const char *key;
	long min, max, def;
	const char *meaning;
} settings[] = {
	{ "supersede_expire_months", -1, 1200, 0,
	  "months after the superseding update's release before a superseded update "
	  "expires (0 at once, -1 never)" },
	{ "purge_expired_days", 0, 36500, 0,
	  "days an update stays expired before it is purged from the catalog (0 never)" },
};
#define N_SETTINGS (sizeof(settings) / sizeof(settings[0]))

typedef struct {
	daemon_t *d;
	ctl_req_t *req;
	const struct setting *s;      /* set: the one being set; list: NULL */
	char value[24];               /* set: the new value */
	char old[64];                 /* set: the value before ("" = default) */
	json_t *result;               /* list */
	char err[256];
} settings_job_t;

static const struct setting *setting_find(const char *key)
{
	for (size_t i = 0; i < N_SETTINGS; i++)
		if (strcmp(settings[i].key, key) == 0)
			return &settings[i];
	return NULL;
}

static int list_work(PGconn *conn, void *arg)
{
	settings_job_t *j = arg;
	j->result = json_array();
	for (size_t i = 0; i < N_SETTINGS; i++) {
		const struct setting *s = &settings[i];
		const char *p[] = { s->key };
		PGresult *r = NULL;
		int ret = db_query(conn, "SELECT value FROM settings WHERE key = $1", 1, p, &r,
		                   j->err, sizeof(j->err));
		if (ret != SS_EOK)
			return ret;
		bool set = PQntuples(r) == 1;
		json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:I, s:b, s:s}", "key", s->key,
		                      "value", set ? PQgetvalue(r, 0, 0) : "", "default", (json_int_t)s->def,
		                      "min", (json_int_t)s->min, "max", (json_int_t)s->max, "set", set,
		                      "meaning", s->meaning);
		PQclear(r);
		if (!set) {
			char def[24];
			snprintf(def, sizeof(def), "%ld", s->def);
			json_object_set_new(o, "value", json_string(def));
		}
		json_array_append_new(j->result, o);
	}
	return SS_EOK;
}

static int set_work(PGconn *conn, void *arg)
{
	settings_job_t *j = arg;
	const char *p[] = { j->s->key, j->value };
	PGresult *r = NULL;
	int ret = db_query(conn, "SELECT value FROM settings WHERE key = $1", 1, p, &r,
	                   j->err, sizeof(j->err));
	if (ret != SS_EOK)
		return ret;
	if (PQntuples(r) == 1)
		snprintf(j->old, sizeof(j->old), "%s", PQgetvalue(r, 0, 0));
	else
		snprintf(j->old, sizeof(j->old), "%ld", j->s->def);
	PQclear(r);
	return db_execp(conn, "INSERT INTO settings (key, value) VALUES ($1, $2) "
	                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", 2, p,
	                j->err, sizeof(j->err));
}

static void job_done(int ret, void *arg)
{
	settings_job_t *j = arg;
	if (ret != SS_EOK) {
		ctl_reply_error(j->req, ret, "%s", j->err[0] ? j->err : ss_strerror(ret));
	} else if (j->s == NULL) {
		ctl_reply(j->req, json_pack("{s:o}", "settings", j->result));
		j->result = NULL;
	} else {
		bool changed = strcmp(j->old, j->value) != 0;
		if (changed)
			site_message(&j->d->site, SS_MSG_SETTING_CHANGED, "info", "Setting %s changed "
			             "from %s to %s; the next sync applies it", j->s->key, j->old, j->value);
		ctl_reply(j->req, json_pack("{s:s, s:s, s:s, s:b}", "key", j->s->key, "old", j->old,
		                            "value", j->value, "changed", changed));
	}
	json_decref(j->result);
	free(j);
}

static void submit(daemon_t *d, ctl_req_t *req, settings_job_t *j, int (*work)(PGconn *, void *))
{
	j->d = d;
	j->req = req;
	if (db_submit(d->site.db, DB_QUICK, work, job_done, j) != SS_EOK) {
		free(j);
		ctl_reply_error(req, SS_ENOMEM, "out of memory");
	}
}

static void cmd_settings_list(ctl_req_t *req, const json_t *args, void *arg)
{
	settings_job_t *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		ctl_reply_error(req, SS_ENOMEM, "out of memory");
		return;
	}
	submit(arg, req, j, list_work);
}

static void cmd_settings_set(ctl_req_t *req, const json_t *args, void *arg)
{
	daemon_t *d = arg;
	const char *key = json_string_value(json_object_get(args, "key"));
	const char *value = json_string_value(json_object_get(args, "value"));
	if (key == NULL || value == NULL) {
		ctl_reply_error(req, SS_EINVAL, "settings.set needs \"key\" and \"value\"");
		return;
	}
	/* The upstream sync reads them: elsewhere they would do nothing. */
	if (!conf_is_top(d->site.conf)) {
		ctl_reply_error(req, SS_ENOTTOP, "%s is not the top site: these settings apply to the "
		                "top site's upstream sync", d->site.conf->site_code);
		return;
	}
	const struct setting *s = setting_find(key);
	if (s == NULL) {
		ctl_reply_error(req, SS_EINVAL, "unknown setting '%.60s'; known: "
		                "supersede_expire_months, purge_expired_days", key);
		return;
	}
	char *end = NULL;
	errno = 0;
	long n = strtol(value, &end, 10);
	if (errno != 0 || end == value || *end != '\0') {
		ctl_reply_error(req, SS_EINVAL, "%s must be a whole number, not '%.60s'", key, value);
		return;
	}
	if (n < s->min || n > s->max) {
		ctl_reply_error(req, SS_EINVAL, "%s must be from %ld to %ld, not %ld", key, s->min,
		                s->max, n);
		return;
	}
	settings_job_t *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		ctl_reply_error(req, SS_ENOMEM, "out of memory");
		return;
	}
	j->s = s;
	snprintf(j->value, sizeof(j->value), "%ld", n);
	submit(d, req, j, set_work);
}

int ctl_settings_register(struct daemon *d)
{
	int ret = ctl_register(d->ctl, "settings.list", cmd_settings_list, d);
	if (ret == SS_EOK)
		ret = ctl_register(d->ctl, "settings.set", cmd_settings_set, d);
	return ret;
}
