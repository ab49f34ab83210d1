/* The site context: sync log, own sync status, version fan-out, events. */
#include "replication/site.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errcode.h"
#include "common/log.h"
#include "replication/child_link.h"
#include "replication/parent_link.h"
#include "replication/spool.h"
#include "replication/status.h"

#define RAISE(d, ev, ...) \
	do { \
		if ((d)->events && (d)->events->ev) \
			(d)->events->ev((d), ##__VA_ARGS__); \
	} while (0)

static void site_relay_push(site_t *d, int msg_id, const char *text);

static void site_vsynclog(site_t *d, const char *fmt, va_list ap)
{
	char line[1024];
	struct tm tm;
	time_t now = time(NULL);
	localtime_r(&now, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02d %02d:%02d:%02d %s ",
	                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	                 tm.tm_min, tm.tm_sec, d->conf->site_code);
	char raw[sizeof(line)];
	vsnprintf(raw, sizeof(raw), fmt, ap);
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

void site_synclog(site_t *d, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	site_vsynclog(d, fmt, ap);
	va_end(ap);
}

void sync_status_succeeded(site_t *d, uint64_t added, uint64_t changed, uint64_t removed,
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
	RAISE(d, sync_finished, true);
}

void sync_status_applied(site_t *d, const apply_t *a, const char *fmt, ...)
{
	sync_status_succeeded(d, a->added, a->changed, a->removed, a->expired, a->upserts + a->deletes);
	site_synclog_updated(d, a->upserts + a->deletes, a->added, a->changed, a->removed,
	                     a->to, a->full ? " (full snapshot)" : "");
	va_list ap;
	va_start(ap, fmt);
	site_vsynclog(d, fmt, ap);
	va_end(ap);
	site_synclog_time(d, NULL);
}

void sync_status_failed(site_t *d, int code, const char *fmt, ...)
{
	sync_status_t *s = &d->self;
	s->state = SITESYNC__SYNC_STATE__SYNC_FAILED;
	s->last_end = time(NULL);
	s->last_error_code = ss_errnum(code);
	char raw[sizeof(s->last_error)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* The text may be a peer's or an upstream's: it travels up in status rows. */
	log_escape(raw, s->last_error, sizeof(s->last_error));
	s->consecutive_failures++;
	RAISE(d, sync_finished, false);
}

void site_synclog_updated(site_t *d, uint64_t items, uint64_t added, uint64_t changed,
                          uint64_t removed, uint64_t version, const char *suffix)
{
	site_synclog(d, "Updated %" PRIu64 " items (%" PRIu64 " added, %" PRIu64 " changed, %"
	             PRIu64 " removed), new catalog version is %" PRIu64 "%s",
	             items, added, changed, removed, version, suffix ? suffix : "");
}

void site_synclog_time(site_t *d, const char *prefix)
{
	long secs = (long)(time(NULL) - d->self.last_start);
	if (secs < 0)
		secs = 0;
	site_synclog(d, "%sSync time: %ldd%02ldh%02ldm%02lds", prefix ? prefix : "", secs / 86400,
	             secs / 3600 % 24, secs / 60 % 60, secs % 60);
}

void site_trust_announced(site_t *d, bool announced, const uint8_t key[32])
{
	if (announced && manifest_keys_trust_raw(&d->keys, key, 32) == SS_EOK)
		log_notice("the top site announced a new manifest key; it is trusted from now on");
}

void site_message(site_t *d, int msg_id, const char *severity, const char *fmt, ...)
{
	char raw[512], text[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	/* History rows are read on terminals: no control characters. */
	log_escape(raw, text, sizeof(text));
	ss_log_level_t lvl = strcmp(severity, "error") == 0 ? SS_LOG_ERROR :
	                     strcmp(severity, "warning") == 0 ? SS_LOG_WARNING : SS_LOG_INFO;
	log_msg(lvl, "[%d] %s", msg_id, text);
	RAISE(d, message, msg_id, severity, text);
	if (lvl == SS_LOG_ERROR)
		site_relay_push(d, msg_id, text);
}

/* Keep an error message for the status row, so the sites above learn of
 * it (the refused reload of a leaf, its failed sync) with the next report. */
static void site_relay_push(site_t *d, int msg_id, const char *text)
{
	size_t keep = d->conf->relay_messages > 0 ? (size_t)d->conf->relay_messages : 0;
	if (keep > SITE_RELAY_MAX)
		keep = SITE_RELAY_MAX;
	if (keep == 0)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t at = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	/* Strictly increasing, so id and time tell a message seen before. */
	if (d->n_relay > 0 && at <= d->relay[0].at_us)
		at = d->relay[0].at_us + 1;
	size_t n = d->n_relay < keep ? d->n_relay : keep - 1;
	memmove(&d->relay[1], &d->relay[0], n * sizeof(d->relay[0]));
	d->relay[0].msg_id = msg_id;
	d->relay[0].at_us = at;
	/* Cut long texts at a character boundary: the row's string is UTF-8. */
	size_t len = strlen(text);
	if (len >= sizeof(d->relay[0].text)) {
		len = sizeof(d->relay[0].text) - 1;
		while (len > 0 && ((unsigned char)text[len] & 0xc0) == 0x80)
			len--;
	}
	memcpy(d->relay[0].text, text, len);
	d->relay[0].text[len] = '\0';
	d->n_relay = n + 1;
	site_status_changed(d);
}

void site_message_relayed(site_t *d, const char *origin, int msg_id, const char *text,
                          int64_t at_us)
{
	char safe[512];
	/* The text is the site's own, but it lands on operators' terminals here. */
	log_escape(text ? text : "", safe, sizeof(safe));
	log_warning("[%d] from %s: %s", msg_id, origin, safe);
	RAISE(d, relayed, origin, msg_id, "error", safe, at_us);
}

void site_version_committed(site_t *d, uint64_t version, const digest_t *digest,
                            uint64_t entries, bool full)
{
	d->version = version;
	d->digest = *digest;
	d->entries = entries;
	d->version_at = time(NULL);
	if (d->subtree)
		status_reached_note(&d->subtree->own, version, d->version_at);
	if (version >= d->top_version) {
		d->top_version = version;
		d->self.behind_since = 0;
	}
	spool_gc(d);
	child_link_notify_all(d, full);
	site_status_changed(d);
	RAISE(d, version_committed, version, full);
}

static void status_report_cb(evutil_socket_t fd, short what, void *arg)
{
	site_t *d = arg;
	d->status_dirty = false;
	d->status_lazy = false;
	if (d->parent)
		parent_link_report(d->parent);
}

void site_status_changed(site_t *d)
{
	RAISE(d, status_changed);
	if (d->status_dirty || d->status_ev == NULL)
		return;
	d->status_dirty = true;
	/* Coalesce bursts of changes into one report (sooner than a lazy one). */
	struct timeval tv = { 0, 50000 };
	evtimer_add(d->status_ev, &tv);
}

void site_status_touched(site_t *d)
{
	RAISE(d, status_changed);
	if (d->status_dirty || d->status_lazy || d->status_ev == NULL || d->parent == NULL)
		return;
	d->status_lazy = true;
	/* Half a heartbeat: a site n levels down is still heard of at the top
	 * well inside heartbeat_timeout (its own heartbeat plus n-1 halves). */
	long ms = (long)d->conf->heartbeat_seconds * 500;
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	evtimer_add(d->status_ev, &tv);
}

void site_status_sent(site_t *d)
{
	if (d->status_lazy && !d->status_dirty && d->status_ev)
		evtimer_del(d->status_ev);
	d->status_lazy = false;
}

bool site_refusal_allow(site_t *d, const char *key, unsigned long *skipped)
{
	int slot = -1, oldest = 0;
	for (int i = 0; i < SITE_REFUSALS && slot < 0; i++)
		if (strcmp(d->refusals[i].key, key) == 0)
			slot = i;
	if (slot < 0) {
		for (int i = 1; i < SITE_REFUSALS; i++)
			if (d->refusals[i].rate.last < d->refusals[oldest].rate.last)
				oldest = i;
		slot = oldest;
		snprintf(d->refusals[slot].key, sizeof(d->refusals[slot].key), "%s", key);
		memset(&d->refusals[slot].rate, 0, sizeof(d->refusals[slot].rate));
	}
	return log_rate_allow(&d->refusals[slot].rate, d->conf->refusal_log_seconds, skipped);
}

int site_events_init(site_t *d)
{
	d->status_ev = evtimer_new(d->base, status_report_cb, d);
	return d->status_ev ? SS_EOK : SS_ENOMEM;
}

void site_events_free(site_t *d)
{
	if (d->status_ev)
		event_free(d->status_ev);
	d->status_ev = NULL;
	free(d->pending);
	d->pending = NULL;
	d->n_pending = 0;
	free(d->down);
	d->down = NULL;
	d->n_down = 0;
}

void site_child_link(site_t *d, const char *site, bool up)
{
	for (size_t i = 0; i < d->n_down; i++) {
		if (strcmp(d->down[i].site, site) != 0)
			continue;
		if (up)
			d->down[i] = d->down[--d->n_down];
		return;
	}
	/* One entry per approved child at most: the list is bounded by it. */
	if (up || !site_child_approved(d, site))
		return;
	void *more = realloc(d->down, (d->n_down + 1) * sizeof(*d->down));
	if (more == NULL)
		return;
	d->down = more;
	snprintf(d->down[d->n_down].site, sizeof(d->down[0].site), "%s", site);
	d->down[d->n_down++].since = time(NULL);
}

time_t site_child_down_since(const site_t *d, const char *site)
{
	for (size_t i = 0; i < d->n_down; i++)
		if (strcmp(d->down[i].site, site) == 0)
			return d->down[i].since;
	return 0;
}

void site_pending_note(site_t *d, const char *site, const char *addr)
{
	size_t max = d->conf->pending_max > 0 ? (size_t)d->conf->pending_max : 0;
	time_t now = time(NULL);
	site_pending_t *e = NULL;
	for (size_t i = 0; i < d->n_pending && e == NULL; i++)
		if (strcmp(d->pending[i].site, site) == 0)
			e = &d->pending[i];
	if (e == NULL && max == 0)
		return;
	if (e == NULL && d->n_pending < max) {
		site_pending_t *more = realloc(d->pending, (d->n_pending + 1) * sizeof(*more));
		if (more == NULL)
			return;
		d->pending = more;
		e = &d->pending[d->n_pending++];
		memset(e, 0, sizeof(*e));
	}
	if (e == NULL) {
		/* Full: the one heard from longest ago makes room. */
		e = &d->pending[0];
		for (size_t i = 1; i < d->n_pending; i++)
			if (d->pending[i].last < e->last)
				e = &d->pending[i];
		memset(e, 0, sizeof(*e));
	}
	if (e->attempts == 0) {
		snprintf(e->site, sizeof(e->site), "%s", site);
		e->first = now;
	}
	snprintf(e->addr, sizeof(e->addr), "%s", addr ? addr : "");
	e->last = now;
	e->attempts++;
}

static int pending_newest_first(const void *a, const void *b)
{
	const site_pending_t *x = a, *y = b;
	return x->last < y->last ? 1 : x->last > y->last ? -1 : strcmp(x->site, y->site);
}

json_t *site_pending_json(const site_t *d)
{
	json_t *arr = json_array();
	site_pending_t *v = d->n_pending ? malloc(d->n_pending * sizeof(*v)) : NULL;
	if (v == NULL)
		return arr;
	memcpy(v, d->pending, d->n_pending * sizeof(*v));
	qsort(v, d->n_pending, sizeof(*v), pending_newest_first);
	for (size_t i = 0; i < d->n_pending; i++) {
		if (site_child_approved(d, v[i].site))
			continue;       /* approved since: no longer pending */
		json_t *o = json_object();
		json_object_set_new(o, "site", json_string(v[i].site));
		json_object_set_new(o, "address", json_string(v[i].addr));
		json_object_set_new(o, "first_attempt", status_time_json(v[i].first));
		json_object_set_new(o, "last_attempt", status_time_json(v[i].last));
		json_object_set_new(o, "attempts", json_integer(v[i].attempts));
		json_array_append_new(arr, o);
	}
	free(v);
	return arr;
}

bool site_child_approved(const site_t *d, const char *site)
{
	for (size_t i = 0; i < d->n_approved; i++)
		if (strcmp(d->approved[i], site) == 0)
			return true;
	return false;
}

int site_set_approved(site_t *d, char (*sites)[4], size_t n)
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
