/* Sync history rows: written at the end of every sync, read back at start. */
#include "replication/synchist.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "common/errcode.h"
#include "common/log.h"
#include "replication/site.h"
#include "replication/status.h"
#include "storage/db.h"

typedef struct {
	char kind[12];
	char result[12];
	char started[40];
	char ended[40];
	char from[24], to[24];
	char added[24], changed[24], removed[24], expired[24];
	char code[16];
	char error[256];
	char keep[24];          /* [status] sync_history_rows */
	char trigger[16];
	char source[160];
	char by_source[1024];
	synchist_then_fn then;  /* after the row is written (or could not be) */
	void *then_arg;
} synchist_job_t;

static pthread_mutex_t stamp_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t stamp_last;      /* microseconds since the epoch */

void synchist_stamp(char *buf, size_t len)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	int64_t us = (int64_t)tv.tv_sec * 1000000 + tv.tv_usec;
	pthread_mutex_lock(&stamp_lock);
	if (us <= stamp_last)
		us = stamp_last + 1;
	stamp_last = us;
	pthread_mutex_unlock(&stamp_lock);
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	char day[32];
	strftime(day, sizeof(day), "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06d+00", day, (int)(us % 1000000));
}

static void epoch_param(char *buf, size_t len, time_t t)
{
	snprintf(buf, len, "%lld", (long long)t);
}

static int record_work(PGconn *conn, void *arg)
{
	synchist_job_t *j = arg;
	const char *p[] = { j->kind, j->result, j->started, j->ended, j->from, j->to, j->added,
	                    j->changed, j->removed, j->expired, j->code,
	                    j->error[0] ? j->error : NULL, j->trigger, j->source, j->by_source };
	int ret = db_execp(conn, "INSERT INTO sync_history (kind, result, started_at, ended_at, "
	                   "from_version, to_version, added, changed, removed, expired, error_code, error, "
	                   "sync_trigger, source, by_source) "
	                   "VALUES ($1, $2, to_timestamp($3::bigint), to_timestamp($4::bigint), $5, $6, "
	                   "$7, $8, $9, $10, $11, $12, $13, $14, $15)", 15, p, NULL, 0);
	/* Bounded: a parent that makes many versions must not grow it forever. */
	const char *k[] = { j->keep };
	if (ret == SS_EOK)
		ret = db_execp(conn, "DELETE FROM sync_history WHERE id <= (SELECT id FROM sync_history "
		               "ORDER BY id DESC OFFSET $1::bigint LIMIT 1)", 1, k, NULL, 0);
	return ret;
}

static void record_done(int ret, void *arg)
{
	synchist_job_t *j = arg;
	if (ret != SS_EOK)
		log_warning("cannot record the sync in the history (%s)", ss_strerror(ret));
	if (j->then)
		j->then(j->then_arg);
	free(j);
}

/* The newest syncs, newest first, for the dashboard. */
static site_sync_t *recent_push(site_t *d)
{
	size_t n = d->n_recent < SITE_RECENT_SYNCS ? d->n_recent : SITE_RECENT_SYNCS - 1;
	memmove(&d->recent[1], &d->recent[0], n * sizeof(d->recent[0]));
	d->n_recent = n + 1;
	memset(&d->recent[0], 0, sizeof(d->recent[0]));
	return &d->recent[0];
}

static void remember(site_t *d, const synchist_job_t *j, time_t started, time_t ended,
                     uint64_t from, uint64_t to, const uint64_t c[4])
{
	site_sync_t *r = recent_push(d);
	snprintf(r->kind, sizeof(r->kind), "%s", j->kind);
	snprintf(r->result, sizeof(r->result), "%s", j->result);
	snprintf(r->trigger, sizeof(r->trigger), "%s", j->trigger);
	snprintf(r->source, sizeof(r->source), "%s", j->source);
	snprintf(r->by_source, sizeof(r->by_source), "%s", j->by_source);
	snprintf(r->error, sizeof(r->error), "%s", j->error);
	r->error_code = atoi(j->code);
	r->started = started;
	r->ended = ended;
	r->from = from;
	r->to = to;
	r->added = c[0];
	r->changed = c[1];
	r->removed = c[2];
	r->expired = c[3];
}

json_t *synchist_recent_json(const site_t *d)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < d->n_recent; i++) {
		const site_sync_t *r = &d->recent[i];
		json_t *o = json_object();
		json_object_set_new(o, "kind", json_string(r->kind));
		json_object_set_new(o, "started_at", status_time_json(r->started));
		json_object_set_new(o, "ended_at", status_time_json(r->ended));
		json_object_set_new(o, "duration_s", json_integer(r->ended > r->started ?
		                    (json_int_t)(r->ended - r->started) : 0));
		json_object_set_new(o, "trigger", json_string(r->trigger));
		json_object_set_new(o, "source", json_string(r->source));
		json_object_set_new(o, "by_source", r->by_source[0] ? json_string(r->by_source) : json_null());
		json_object_set_new(o, "result", json_string(r->result));
		json_object_set_new(o, "from_version", json_integer((json_int_t)r->from));
		json_object_set_new(o, "to_version", json_integer((json_int_t)r->to));
		json_object_set_new(o, "added", json_integer((json_int_t)r->added));
		json_object_set_new(o, "changed", json_integer((json_int_t)r->changed));
		json_object_set_new(o, "removed", json_integer((json_int_t)r->removed));
		json_object_set_new(o, "expired", json_integer((json_int_t)r->expired));
		json_object_set_new(o, "error_code", json_integer(r->error_code));
		json_object_set_new(o, "error", r->error[0] ? json_string(r->error) : json_null());
		json_array_append_new(arr, o);
	}
	return arr;
}

void synchist_record(site_t *d, const char *kind, bool unchanged, uint64_t from, uint64_t to)
{
	synchist_record_then(d, kind, unchanged, from, to, "", NULL, NULL);
}

void synchist_record_sources(site_t *d, const char *kind, bool unchanged, uint64_t from,
                             uint64_t to, const char *by_source)
{
	synchist_record_then(d, kind, unchanged, from, to, by_source, NULL, NULL);
}

void synchist_record_then(site_t *d, const char *kind, bool unchanged, uint64_t from,
                          uint64_t to, const char *by_source, synchist_then_fn then,
                          void *then_arg)
{
	const sync_status_t *s = &d->self;
	synchist_job_t *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		if (then)
			then(then_arg);
		return;
	}
	j->then = then;
	j->then_arg = then_arg;
	bool failed = s->state == SITESYNC__SYNC_STATE__SYNC_FAILED;
	snprintf(j->kind, sizeof(j->kind), "%s", kind);
	snprintf(j->result, sizeof(j->result), "%s",
	         failed ? "failed" : unchanged ? "unchanged" : "succeeded");
	epoch_param(j->started, sizeof(j->started), s->last_start ? s->last_start : s->last_end);
	epoch_param(j->ended, sizeof(j->ended), s->last_end);
	snprintf(j->from, sizeof(j->from), "%" PRIu64, from);
	snprintf(j->to, sizeof(j->to), "%" PRIu64, failed ? from : to);
	uint64_t c[4] = { s->added, s->changed, s->removed, s->expired };
	if (failed || unchanged)
		memset(c, 0, sizeof(c));
	snprintf(j->added, sizeof(j->added), "%" PRIu64, c[0]);
	snprintf(j->changed, sizeof(j->changed), "%" PRIu64, c[1]);
	snprintf(j->removed, sizeof(j->removed), "%" PRIu64, c[2]);
	snprintf(j->expired, sizeof(j->expired), "%" PRIu64, c[3]);
	snprintf(j->code, sizeof(j->code), "%d", failed ? s->last_error_code : 0);
	if (failed)
		snprintf(j->error, sizeof(j->error), "%s", s->last_error);
	snprintf(j->keep, sizeof(j->keep), "%d", d->conf->sync_history_rows);
	snprintf(j->trigger, sizeof(j->trigger), "%s", s->trigger[0] ? s->trigger :
	         strcmp(kind, "import") == 0 ? "import" : strcmp(kind, "pull") == 0 ? "parent" : "manual");
	snprintf(j->source, sizeof(j->source), "%s", s->source);
	snprintf(j->by_source, sizeof(j->by_source), "%s", failed || unchanged ? "" : by_source);
	remember(d, j, s->last_start ? s->last_start : s->last_end, s->last_end, from,
	         failed ? from : to, c);
	if (d->db == NULL || db_submit(d->db, DB_QUICK, record_work, record_done, j) != SS_EOK) {
		if (then)
			then(then_arg);
		free(j);
	}
}

/* The newest rows back into memory, oldest pushed first. */
static int load_recent(site_t *d, PGconn *conn, char *err, size_t errlen)
{
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", SITE_RECENT_SYNCS);
	const char *p[] = { lim };
	PGresult *r = NULL;
	int ret = db_query(conn, "SELECT * FROM (SELECT id, kind, result, sync_trigger, source, "
		"extract(epoch FROM started_at)::bigint, coalesce(extract(epoch FROM ended_at)::bigint, 0), "
		"coalesce(from_version, 0), coalesce(to_version, 0), added, changed, removed, expired, "
		"error_code, coalesce(error, ''), by_source FROM sync_history WHERE result <> 'running' "
		"ORDER BY id DESC LIMIT $1::bigint) n ORDER BY id", 1, p, &r, err, errlen);
	if (ret != SS_EOK)
		return ret;
	d->n_recent = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		site_sync_t *e = recent_push(d);
		snprintf(e->kind, sizeof(e->kind), "%s", PQgetvalue(r, i, 1));
		snprintf(e->result, sizeof(e->result), "%s", PQgetvalue(r, i, 2));
		snprintf(e->trigger, sizeof(e->trigger), "%s", PQgetvalue(r, i, 3));
		snprintf(e->source, sizeof(e->source), "%s", PQgetvalue(r, i, 4));
		e->started = (time_t)strtoll(PQgetvalue(r, i, 5), NULL, 10);
		e->ended = (time_t)strtoll(PQgetvalue(r, i, 6), NULL, 10);
		e->from = strtoull(PQgetvalue(r, i, 7), NULL, 10);
		e->to = strtoull(PQgetvalue(r, i, 8), NULL, 10);
		e->added = strtoull(PQgetvalue(r, i, 9), NULL, 10);
		e->changed = strtoull(PQgetvalue(r, i, 10), NULL, 10);
		e->removed = strtoull(PQgetvalue(r, i, 11), NULL, 10);
		e->expired = strtoull(PQgetvalue(r, i, 12), NULL, 10);
		e->error_code = atoi(PQgetvalue(r, i, 13));
		snprintf(e->error, sizeof(e->error), "%s", PQgetvalue(r, i, 14));
		snprintf(e->by_source, sizeof(e->by_source), "%s", PQgetvalue(r, i, 15));
	}
	PQclear(r);
	return SS_EOK;
}

int synchist_load(site_t *d, PGconn *conn, char *err, size_t errlen)
{
	sync_status_t *s = &d->self;
	PGresult *r = NULL;
	/* The newest sync, the newest success and the failures since it. */
	int ret = db_query(conn,
		"WITH last AS (SELECT * FROM sync_history WHERE result <> 'running' "
		"  ORDER BY id DESC LIMIT 1), "
		"ok AS (SELECT max(id) AS id, max(extract(epoch FROM ended_at))::bigint AS at "
		"  FROM sync_history WHERE result IN ('succeeded', 'unchanged')) "
		"SELECT result, extract(epoch FROM started_at)::bigint, "
		"  coalesce(extract(epoch FROM ended_at)::bigint, 0), added, changed, removed, expired, "
		"  error_code, coalesce(error, ''), coalesce((SELECT at FROM ok), 0), "
		"  (SELECT count(*) FROM sync_history h WHERE h.result = 'failed' "
		"   AND h.id > coalesce((SELECT id FROM ok), 0)) "
		"FROM last", 0, NULL, &r, err, errlen);
	if (ret != SS_EOK)
		return ret;
	if (PQntuples(r) == 1) {
		const char *result = PQgetvalue(r, 0, 0);
		s->state = strcmp(result, "failed") == 0 ? SITESYNC__SYNC_STATE__SYNC_FAILED :
		           SITESYNC__SYNC_STATE__SYNC_SUCCEEDED;
		s->last_start = (time_t)strtoll(PQgetvalue(r, 0, 1), NULL, 10);
		s->last_end = (time_t)strtoll(PQgetvalue(r, 0, 2), NULL, 10);
		s->added = strtoull(PQgetvalue(r, 0, 3), NULL, 10);
		s->changed = strtoull(PQgetvalue(r, 0, 4), NULL, 10);
		s->removed = strtoull(PQgetvalue(r, 0, 5), NULL, 10);
		s->expired = strtoull(PQgetvalue(r, 0, 6), NULL, 10);
		s->last_error_code = atoi(PQgetvalue(r, 0, 7));
		snprintf(s->last_error, sizeof(s->last_error), "%s", PQgetvalue(r, 0, 8));
		s->last_success = (time_t)strtoll(PQgetvalue(r, 0, 9), NULL, 10);
		s->consecutive_failures = (uint32_t)strtoul(PQgetvalue(r, 0, 10), NULL, 10);
	}
	PQclear(r);
	return load_recent(d, conn, err, errlen);
}
