/* Daemon-wide helpers: sync log, status messages, version fan-out. */
#include "server/daemon.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replication/child_link.h"
#include "replication/parent_link.h"
#include "replication/spool.h"
#include "server/errcode.h"
#include "server/log.h"
#include "storage/db.h"

void daemon_synclog(daemon_t *d, const char *fmt, ...)
{
	char line[1024];
	struct tm tm;
	time_t now = time(NULL);
	localtime_r(&now, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d %s ",
	                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	                 tm.tm_min, tm.tm_sec, d->conf->site_code);
	char raw[sizeof(line)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* One step, one line: upstream and peer text cannot add another. */
	if (n < 0 || (size_t)n >= sizeof(line) - 1)
		return;
	log_escape(raw, line + n, sizeof(line) - 1 - (size_t)n);
	n += (int)strlen(line + n);
	line[n++] = '\n';
	log_info("sync: %.*s", n - 1 - 24, line + 24);
	if (d->sync_log_fd >= 0) {
		/* O_APPEND + one write per line: safe from several threads. */
		ssize_t w = write(d->sync_log_fd, line, (size_t)n);
		(void)w;
	}
}

void daemon_sync_succeeded(daemon_t *d, uint64_t added, uint64_t changed, uint64_t removed,
                           uint64_t expired, uint64_t items)
{
	sync_status_t *s = &d->self;
	time_t now = time(NULL);
	s->state = SITESYNC__SYNC_STATE__SYNC_SUCCEEDED;
	s->last_end = now;
	s->last_success = now;
	s->last_error_code = 0;
	s->last_error[0] = '\0';
	s->consecutive_failures = 0;
	s->next_retry = 0;
	s->added = added;
	s->changed = changed;
	s->removed = removed;
	s->expired = expired;
	s->progress_done = s->progress_total = items;
}

void daemon_synclog_updated(daemon_t *d, uint64_t items, uint64_t added, uint64_t changed,
                            uint64_t removed, uint64_t version, const char *suffix)
{
	daemon_synclog(d, "Updated %" PRIu64 " items (%" PRIu64 " added, %" PRIu64 " changed, %"
	               PRIu64 " removed), new catalog version is %" PRIu64 "%s",
	               items, added, changed, removed, version, suffix ? suffix : "");
}

void daemon_synclog_time(daemon_t *d, const char *prefix)
{
	long secs = (long)(time(NULL) - d->self.last_start);
	if (secs < 0)
		secs = 0;
	daemon_synclog(d, "%sSync time: %ldd%02ldh%02ldm%02lds", prefix ? prefix : "", secs / 86400,
	               secs / 3600 % 24, secs / 60 % 60, secs % 60);
}

void daemon_trust_announced(daemon_t *d, bool announced, const uint8_t key[32])
{
	if (announced && manifest_keys_trust_raw(&d->keys, key, 32) == SS_EOK)
		log_notice("the top site announced a new manifest key; it is trusted from now on");
}

typedef struct {
	char site[4];
	char msg_id[12];
	char severity[12];
	char text[512];
} message_job_t;

static int message_work(PGconn *conn, void *arg)
{
	message_job_t *m = arg;
	const char *p[] = { m->site, m->msg_id, m->severity, m->text };
	return db_execp(conn, "INSERT INTO status_messages (site, msg_id, severity, text) "
	                "VALUES ($1, $2, $3, $4)", 4, p, NULL, 0);
}

static void message_done(int ret, void *arg)
{
	free(arg);
}

void daemon_message(daemon_t *d, int msg_id, const char *severity, const char *fmt, ...)
{
	message_job_t *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return;
	char raw[sizeof(m->text)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* History rows are read on terminals: no control characters. */
	log_escape(raw, m->text, sizeof(m->text));
	snprintf(m->site, sizeof(m->site), "%s", d->conf->site_code);
	snprintf(m->msg_id, sizeof(m->msg_id), "%d", msg_id);
	snprintf(m->severity, sizeof(m->severity), "%s", severity);
	ss_log_level_t lvl = strcmp(severity, "error") == 0 ? SS_LOG_ERROR :
	                     strcmp(severity, "warning") == 0 ? SS_LOG_WARNING : SS_LOG_INFO;
	log_msg(lvl, "[%d] %s", msg_id, m->text);
	if (d->db == NULL || db_submit(d->db, DB_QUICK, message_work, message_done, m) != SS_EOK)
		free(m);
	/* A tenth of the kept rows written since the last prune: prune again,
	 * so the table stays near its bound however fast rows come. */
	if (++d->messages_since_prune >= (unsigned)d->conf->messages_keep / 10)
		daemon_prune_messages(d);
}

void daemon_version_committed(daemon_t *d, uint64_t version, const digest_t *digest,
                              uint64_t entries, bool full)
{
	d->version = version;
	d->digest = *digest;
	d->entries = entries;
	d->version_at = time(NULL);
	if (version >= d->top_version) {
		d->top_version = version;
		d->self.behind_since = 0;
	}
	spool_gc(d);
	child_link_notify_all(d, full);
	daemon_status_changed(d);
}

static void status_report_cb(evutil_socket_t fd, short what, void *arg)
{
	daemon_t *d = arg;
	d->status_dirty = false;
	if (d->parent)
		parent_link_report(d->parent);
}

void daemon_status_changed(daemon_t *d)
{
	if (d->status_dirty || d->status_ev == NULL)
		return;
	d->status_dirty = true;
	/* Coalesce bursts of changes into one report. */
	struct timeval tv = { 0, 50000 };
	evtimer_add(d->status_ev, &tv);
}

bool daemon_refusal_allow(daemon_t *d, const char *key, unsigned long *skipped)
{
	int slot = -1, oldest = 0;
	for (int i = 0; i < DAEMON_REFUSALS && slot < 0; i++)
		if (strcmp(d->refusals[i].key, key) == 0)
			slot = i;
	if (slot < 0) {
		for (int i = 1; i < DAEMON_REFUSALS; i++)
			if (d->refusals[i].rate.last < d->refusals[oldest].rate.last)
				oldest = i;
		slot = oldest;
		snprintf(d->refusals[slot].key, sizeof(d->refusals[slot].key), "%s", key);
		memset(&d->refusals[slot].rate, 0, sizeof(d->refusals[slot].rate));
	}
	return log_rate_allow(&d->refusals[slot].rate, d->conf->refusal_log_seconds, skipped);
}

typedef struct {
	char keep[16];
	char days[16];
} prune_job_t;

static int prune_work(PGconn *conn, void *arg)
{
	prune_job_t *j = arg;
	const char *p[] = { j->days, j->keep };
	/* Older than the age limit, or beyond the newest `keep` rows. */
	return db_execp(conn, "DELETE FROM status_messages WHERE at < now() - make_interval(days => $1::int) "
	                "OR id <= (SELECT id FROM status_messages ORDER BY id DESC OFFSET $2::int LIMIT 1)",
	                2, p, NULL, 0);
}

static void prune_done(int ret, void *arg)
{
	if (ret != SS_EOK)
		log_warning("pruning the history failed (%s)", ss_strerror(ret));
	free(arg);
}

void daemon_prune_messages(daemon_t *d)
{
	d->messages_since_prune = 0;
	prune_job_t *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return;
	snprintf(j->keep, sizeof(j->keep), "%d", d->conf->messages_keep);
	snprintf(j->days, sizeof(j->days), "%d", d->conf->messages_days);
	if (d->db == NULL || db_submit(d->db, DB_BULK, prune_work, prune_done, j) != SS_EOK)
		free(j);
}

static void prune_cb(evutil_socket_t fd, short what, void *arg)
{
	daemon_prune_messages(arg);
}

int daemon_events_init(daemon_t *d)
{
	d->status_ev = evtimer_new(d->base, status_report_cb, d);
	/* At start, then every ten minutes (and after a burst of rows,
	 * daemon_message()). */
	d->prune_ev = event_new(d->base, -1, EV_PERSIST, prune_cb, d);
	struct timeval every = { 600, 0 };
	if (d->status_ev == NULL || d->prune_ev == NULL || event_add(d->prune_ev, &every) != 0)
		return SS_ENOMEM;
	event_active(d->prune_ev, EV_TIMEOUT, 0);
	return SS_EOK;
}

void daemon_events_free(daemon_t *d)
{
	if (d->status_ev)
		event_free(d->status_ev);
	d->status_ev = NULL;
	if (d->prune_ev)
		event_free(d->prune_ev);
	d->prune_ev = NULL;
}

bool daemon_child_approved(const daemon_t *d, const char *site)
{
	for (size_t i = 0; i < d->n_approved; i++)
		if (strcmp(d->approved[i], site) == 0)
			return true;
	return false;
}

int daemon_set_approved(daemon_t *d, char (*sites)[4], size_t n)
{
	char (*copy)[4] = NULL;
	if (n > 0) {
		copy = calloc(n, sizeof(*copy));
		if (copy == NULL)
			return SS_ENOMEM;
		memcpy(copy, sites, n * sizeof(*copy));
	}
	free(d->approved);
	d->approved = copy;
	d->n_approved = n;
	return SS_EOK;
}
